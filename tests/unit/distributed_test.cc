// Data-parallel training over real Gloo collectives (ranks as threads):
// ZeRO against unsharded updates, exact resume across both, optimizer and
// learning-rate changes at a restart, and GLaM experts placed in parallel
// against replicated.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <mutex>

#include "checkpoint/checkpoint.h"
#include "common/job_spec.h"
#include "common/util.h"
#include "tests/unit/gloo_world.h"
#include "tests/unit/test_util.h"
#include "worker/trainer/trainer.h"

namespace vigil::trainer {
namespace {

using vigil::testing::RunWorld;
using vigil::testing::TempDir;

// A small job; `extra` is appended to the YAML (sections it names replace
// nothing, so it only adds fields under a trailing section).
JobSpec Spec(int world, const std::string& optimizer_extra, const std::string& model_extra = "",
             int batch_per_rank = 2) {
  const std::string yaml =
      "name: dist\n"
      "model: {vocab: 32, d_model: 16, layers: 2, heads: 2, seq_len: 8" +
      model_extra +
      "}\n"
      "data: {seed: 5}\n"
      "optimizer: {lr: 0.01, grad_clip: 0.5, weight_decay: 0.1" +
      optimizer_extra +
      "}\n"
      "schedule: {steps: 100, warmup_steps: 2, batch_per_rank: " +
      std::to_string(batch_per_rank) +
      "}\n"
      "world: {hosts: 1, ranks_per_host: " +
      std::to_string(world) + "}\n";
  auto spec = ParseJobSpec(yaml, "dist.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return spec.value();
}

// Block 1 of 2 is a top-2 MoE of 4 experts, placed as told.
JobSpec MoeSpec(int world, const std::string& placement) {
  return Spec(world, "",
              ", moe: {experts: 4, every: 2, capacity_factor: 1.0, placement: " + placement + "}");
}

struct RankResult {
  std::vector<float> params;
  std::vector<StepStats> stats;
  std::string digest;
  std::vector<std::string> notes;
  int64_t state_bytes = 0;
};

// Runs `steps` steps on every rank (after resuming from `resume` if given,
// saving at the end if `save`), returning each rank's outcome.
std::vector<RankResult> Train(const JobSpec& spec, int world, int steps, const TrainerOptions& opts,
                              const std::string& resume = "", bool save = false) {
  auto data = MakeDataSource(spec);
  EXPECT_TRUE(data.ok());
  std::vector<RankResult> out(world);
  RunWorld(world, [&](Collectives& c) {
    Trainer t(spec, opts, *data.value(), &c, MakeLogger("dist." + std::to_string(c.rank())));
    if (resume.empty()) {
      t.Initialize();
    } else {
      Status st = t.Resume(resume);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    RankResult& r = out[c.rank()];
    for (int i = 0; i < steps; ++i) r.stats.push_back(t.Step());
    if (save) {
      auto dir = t.Save();
      ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    }
    r.params = t.model().params();
    r.digest = t.ParamsDigest();
    r.notes = t.resume_notes();
    r.state_bytes = t.optimizer().state_bytes();
  });
  return out;
}

std::string Latest(const std::string& root, int64_t step) {
  return root + "/" + checkpoint::StepDirName(step);
}

// A checkpoint's manifest and whole parameter section, verified.
struct Whole {
  checkpoint::Manifest manifest;
  std::vector<float> params;
};
Result<Whole> LoadWhole(const std::string& dir) {
  auto reader = checkpoint::CheckpointReader::Open(checkpoint::Storage::Default(), dir);
  if (!reader.ok()) return reader.status();
  auto params = reader.value()->ReadSection("params");
  if (!params.ok()) return params.status();
  return Whole{reader.value()->manifest(), std::move(params.value())};
}

// ZeRO and plain data parallelism do the same float operations on every
// parameter (see sharded_optimizer.h), so the tolerance is zero: identical
// bits on every rank after every step. World 3 gives uneven slices.
TEST(Zero, ShardedAndUnshardedUpdatesAreBitIdentical) {
  const int W = 3;
  const auto sharded = Train(Spec(W, ", zero: true"), W, 6, {});
  const auto plain = Train(Spec(W, ", zero: false"), W, 6, {});
  for (int r = 0; r < W; ++r) {
    EXPECT_EQ(sharded[r].params, plain[r].params) << "rank " << r;
    EXPECT_EQ(sharded[r].params, sharded[0].params) << "ranks disagree";
    EXPECT_EQ(sharded[r].digest, plain[0].digest);
    for (size_t i = 0; i < sharded[r].stats.size(); ++i) {
      EXPECT_EQ(sharded[r].stats[i].loss, plain[r].stats[i].loss);
      EXPECT_EQ(sharded[r].stats[i].grad_norm, plain[r].stats[i].grad_norm);
    }
    // Each rank keeps a third of the moments (slices differ by one float at most).
    EXPECT_LE(sharded[r].state_bytes * W, plain[r].state_bytes + 2 * W * 4);
  }
  // Clipping was active: the clip is 0.5 and early gradients are larger.
  EXPECT_GT(sharded[0].stats[0].grad_norm, 0.5f);
  EXPECT_LT(sharded[0].stats.back().loss, sharded[0].stats.front().loss);
}

// Stop at step 3, resume the other mode, finish: the same bits as six
// uninterrupted steps.
TEST(Zero, ResumeIsExactAcrossShardedAndUnsharded) {
  const int W = 2;
  TempDir root;
  TrainerOptions opts;
  opts.checkpoint_dir = root.path();
  const auto straight = Train(Spec(W, ", zero: true"), W, 6, opts);
  Train(Spec(W, ", zero: true"), W, 3, opts, "", /*save=*/true);
  const auto resumed = Train(Spec(W, ", zero: false"), W, 3, opts, Latest(root.path(), 3));
  EXPECT_EQ(resumed[0].digest, straight[0].digest);
  EXPECT_EQ(resumed[1].params, straight[1].params);
  EXPECT_TRUE(resumed[0].notes.empty());
}

// AdamW -> SGD drops the moments; SGD -> AdamW starts them from zero, so the
// first AdamW step moves every parameter with a real gradient by about the
// learning rate (bias-corrected m / sqrt(v) = g / |g|), which old moments
// would not do.
TEST(OptimizerSwitch, MomentsAreNeverCarriedAcrossASwitch) {
  const int W = 2;
  TempDir root;
  TrainerOptions adamw;
  adamw.checkpoint_dir = root.path();
  Train(Spec(W, ""), W, 3, adamw, "", true);

  TrainerOptions sgd = adamw;
  sgd.optimizer = "sgd";
  const auto after_sgd = Train(Spec(W, ""), W, 2, sgd, Latest(root.path(), 3), true);
  ASSERT_EQ(after_sgd[0].notes.size(), 1u);
  EXPECT_NE(after_sgd[0].notes[0].find("from adamw to sgd"), std::string::npos);
  EXPECT_NE(after_sgd[0].notes[0].find("dropped"), std::string::npos);
  auto sgd_ckpt = LoadWhole(Latest(root.path(), 5));
  ASSERT_TRUE(sgd_ckpt.ok());
  EXPECT_EQ(sgd_ckpt->manifest.sections, std::vector<std::string>{"params"});
  EXPECT_EQ(sgd_ckpt->manifest.optimizer, "sgd");

  const auto back = Train(Spec(W, ""), W, 1, adamw, Latest(root.path(), 5));
  ASSERT_EQ(back[0].notes.size(), 1u);
  EXPECT_NE(back[0].notes[0].find("moments start from zero"), std::string::npos);
  const float lr = back[0].stats[0].lr;
  EXPECT_FLOAT_EQ(lr, 0.01f);
  int moved_by_lr = 0, checked = 0;
  for (size_t i = 0; i < back[0].params.size(); ++i) {
    // weight decay 0.1 adds lr * 0.1 * |p| at most; compare the step to lr.
    const float before = sgd_ckpt->params[i];
    const float step = std::fabs(back[0].params[i] - before);
    const float decay = lr * 0.1f * std::fabs(before);
    ++checked;
    if (std::fabs(step - lr) <= decay + 2e-4f) ++moved_by_lr;
  }
  EXPECT_GT(moved_by_lr, checked * 9 / 10) << moved_by_lr << " of " << checked;
}

TEST(OptimizerSwitch, LearningRateScaleAppliesFromTheResumedStepAndPersists) {
  const int W = 2;
  TempDir root;
  TrainerOptions opts;
  opts.checkpoint_dir = root.path();
  Train(Spec(W, ""), W, 3, opts, "", true);
  TrainerOptions scaled = opts;
  scaled.lr_scale = 0.25;
  const auto r = Train(Spec(W, ""), W, 1, scaled, Latest(root.path(), 3), true);
  EXPECT_FLOAT_EQ(r[0].stats[0].lr, 0.0025f);
  ASSERT_EQ(r[0].notes.size(), 1u);
  EXPECT_NE(r[0].notes[0].find("scale 0.25"), std::string::npos);
  auto ckpt = LoadWhole(Latest(root.path(), 4));
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ(ckpt->manifest.lr_scale, 0.25);
  EXPECT_EQ(ckpt->manifest.optimizer_step, 4);
  // A later restart that names no scale (a crash, say) keeps it, silently.
  const auto later = Train(Spec(W, ""), W, 1, opts, Latest(root.path(), 4));
  EXPECT_FLOAT_EQ(later[0].stats[0].lr, 0.0025f);
  EXPECT_TRUE(later[0].notes.empty());
}

TEST(OptimizerSwitch, ACheckpointOfAnotherModelIsRefused) {
  TempDir root;
  TrainerOptions opts;
  opts.checkpoint_dir = root.path();
  Train(Spec(1, ""), 1, 1, opts, "", true);
  auto spec = Spec(1, "", ", activation: relu");
  auto data = MakeDataSource(spec);
  GlooCollectives single;
  Trainer t(spec, opts, *data.value(), &single, MakeLogger("dist.0"));
  Status st = t.Resume(Latest(root.path(), 1));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
}

// Expert parallel (each of 2 ranks holds 2 of 4 experts, tokens cross an
// all-to-all) against replicated (every rank holds all 4): each token sees
// the same arithmetic, so the first losses are identical. Later steps
// differ only in the order the experts' gradients are summed (by the ring
// replicated, by the owner expert-parallel); after 4 steps the parameters
// agree to 1e-5 relative.
TEST(ExpertParallel, SameLossAsReplicated) {
  const int W = 2;
  TempDir ep_root, rep_root;
  TrainerOptions ep_opts, rep_opts;
  ep_opts.checkpoint_dir = ep_root.path();
  rep_opts.checkpoint_dir = rep_root.path();
  const auto ep_spec = MoeSpec(W, "expert_parallel");
  const auto rep_spec = MoeSpec(W, "replicated");
  ASSERT_TRUE(UsesExpertParallelism(ep_spec, W));
  ASSERT_FALSE(UsesExpertParallelism(rep_spec, W));
  const auto ep = Train(ep_spec, W, 4, ep_opts, "", true);
  const auto rep = Train(rep_spec, W, 4, rep_opts, "", true);
  EXPECT_EQ(ep[0].stats[0].loss, rep[0].stats[0].loss);
  EXPECT_EQ(ep[0].stats[0].aux_loss, rep[0].stats[0].aux_loss);
  EXPECT_GT(ep[0].stats[0].aux_loss, 0.0f);
  // Expert parallel: each rank holds fewer parameters than the model has.
  EXPECT_LT(ep[0].params.size(), rep[0].params.size());
  auto a = LoadWhole(Latest(ep_root.path(), 4));
  auto b = LoadWhole(Latest(rep_root.path(), 4));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->manifest.param_count, b->manifest.param_count);
  double worst = 0;
  for (int64_t i = 0; i < a->manifest.param_count; ++i) {
    const double x = a->params[i], y = b->params[i];
    worst = std::max(worst, std::fabs(x - y) / (std::fabs(y) + 1e-3));
  }
  EXPECT_LT(worst, 1e-5);
}

// A checkpoint names parameters by global index, so one written with experts
// sharded resumes with experts replicated, and the next step's loss is the
// one the expert-parallel run itself computes.
TEST(ExpertParallel, CheckpointsResumeUnderAnotherPlacement) {
  const int W = 2;
  TempDir root;
  TrainerOptions opts;
  opts.checkpoint_dir = root.path();
  const auto ep_spec = MoeSpec(W, "expert_parallel");
  const auto rep_spec = MoeSpec(W, "replicated");
  const auto straight = Train(ep_spec, W, 3, opts);
  Train(ep_spec, W, 2, opts, "", true);
  const auto resumed = Train(rep_spec, W, 1, opts, Latest(root.path(), 2));
  EXPECT_EQ(resumed[0].stats[0].loss, straight[0].stats[2].loss);
}

// Resharding: a checkpoint written by N ranks loads onto M, every rank
// reading only the slices that hold what it owns at M (its ZeRO slice of the
// moments, and for MoE its experts: 4 experts are expert-parallel on 4 and 2
// ranks, replicated on 1 and 3). The global batch stays 12 sequences, so the
// data order is the same. Two checks:
//   * bit-exact state: saving again at M right after the resume gives the
//     same params and moments as the N-rank checkpoint, value for value;
//   * the next step's loss is the one the N-rank run computes for that step.
//     The parameters are identical; only the order in which the ranks' mean
//     losses are added differs, so the tolerance is 1e-6 relative.
void ExpectReshardsExactly(const std::string& model_extra, int from, int to) {
  SCOPED_TRACE(std::to_string(from) + " -> " + std::to_string(to) + model_extra);
  TempDir root, again;
  TrainerOptions opts;
  opts.checkpoint_dir = root.path();
  const auto spec_from = Spec(from, "", model_extra, 12 / from);
  const auto spec_to = Spec(to, "", model_extra, 12 / to);
  const auto straight = Train(spec_from, from, 3, opts);
  Train(spec_from, from, 2, opts, "", true);
  TrainerOptions resave = opts;
  resave.checkpoint_dir = again.path();
  const auto moved = Train(spec_to, to, 0, resave, Latest(root.path(), 2), true);
  ASSERT_FALSE(moved[0].notes.empty());
  EXPECT_NE(moved[0].notes.back().find("resharded from " + std::to_string(from)),
            std::string::npos);
  auto a =
      checkpoint::CheckpointReader::Open(checkpoint::Storage::Default(), Latest(root.path(), 2));
  auto b =
      checkpoint::CheckpointReader::Open(checkpoint::Storage::Default(), Latest(again.path(), 2));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(b.value()->manifest().world_size, to);
  EXPECT_EQ(b.value()->manifest().optimizer_step, 2);
  for (const char* section : {"params", "adam_m", "adam_v"}) {
    auto x = a.value()->ReadSection(section), y = b.value()->ReadSection(section);
    ASSERT_TRUE(x.ok() && y.ok()) << section;
    EXPECT_EQ(x.value(), y.value()) << section;
  }
  const auto resumed = Train(spec_to, to, 1, opts, Latest(root.path(), 2));
  EXPECT_EQ(resumed[0].stats[0].dropped_choices, 0);
  EXPECT_EQ(straight[0].stats[2].dropped_choices, 0);
  const float want = straight[0].stats[2].loss;
  EXPECT_NEAR(resumed[0].stats[0].loss, want, 1e-6f * std::fabs(want));
}

TEST(Reshard, DenseModelAcrossWorldSizes) {
  for (auto [from, to] : {std::pair{4, 2}, {2, 3}, {4, 1}, {1, 4}})
    ExpectReshardsExactly("", from, to);
}

// Tokens are routed in groups of one rank's batch, so the experts' capacity,
// and which choices it drops, depends on the batch per rank, which a reshard
// changes. Capacity factor 2 gives each of the 4 experts room for every
// token (top-2: ceil(2 * 2N / 4) = N), nothing drops at any world size, and
// the comparison sees the resharding alone.
TEST(Reshard, MoeExpertsMoveToTheirNewOwners) {
  const std::string moe = ", moe: {experts: 4, every: 2, capacity_factor: 2.0}";
  for (auto [from, to] : {std::pair{4, 2}, {2, 3}, {4, 1}, {1, 4}})
    ExpectReshardsExactly(moe, from, to);
}

}  // namespace
}  // namespace vigil::trainer
