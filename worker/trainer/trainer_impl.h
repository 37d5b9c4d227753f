// Template definitions of TrainerT; included by the translation units that
// instantiate it (trainer.cc for the CPU, trainer_cuda.cc for CUDA).
#pragma once

#include "worker/trainer/trainer.h"

#include <xxhash.h>

#include <spdlog/spdlog.h>
#include <cinttypes>
#include <cstdio>

#include "checkpoint/checkpoint.h"

namespace vigil::trainer {
namespace trainer_detail {

inline std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

template <class K>
ParamLayout LayoutOf(const DecoderModelT<K>& m) {
  ParamLayout l;
  l.total = static_cast<int64_t>(m.params().size());
  l.replicated = m.replicated_count();
  l.own_global_begin = m.GlobalIndex(l.replicated);
  l.global_total = m.global_param_count();
  return l;
}

inline OptimizerHyper HyperOf(const OptimizerSpec& o) {
  OptimizerHyper h;
  h.beta1 = static_cast<float>(o.beta1);
  h.beta2 = static_cast<float>(o.beta2);
  h.eps = static_cast<float>(o.eps);
  h.weight_decay = static_cast<float>(o.weight_decay);
  h.grad_clip = static_cast<float>(o.grad_clip);
  return h;
}

}  // namespace trainer_detail

template <class K>
TrainerT<K>::TrainerT(const JobSpec& spec, const TrainerOptions& options, const DataSource& data,
                      Collectives* coll, std::shared_ptr<spdlog::logger> log)
    : spec_(spec),
      options_(options),
      data_(data),
      coll_(coll),
      log_(std::move(log)),
      model_(ModelConfigFor(spec), UsesExpertParallelism(spec, coll->world()) ? coll : nullptr) {
  if (options_.optimizer.empty()) options_.optimizer = spec.optimizer.kind;
  if (!(options_.lr_scale > 0)) {
    inherit_lr_scale_ = true;
    options_.lr_scale = 1.0;
  }
  opt_ = std::make_unique<ShardedOptimizerT<K>>(trainer_detail::LayoutOf(model_), coll_,
                                                options_.optimizer, spec.optimizer.zero,
                                                trainer_detail::HyperOf(spec.optimizer));
}

template <class K>
void TrainerT<K>::Initialize() {
  model_.InitParameters(spec_.data.seed, static_cast<float>(spec_.model.init_std));
  step_ = 0;
  tokens_seen_ = 0;
}

template <class K>
Status TrainerT<K>::Resume(const std::string& dir) {
  auto loaded = checkpoint::LoadCheckpoint(dir);
  if (!loaded.ok()) return loaded.status();
  const auto& m = loaded->manifest;
  if (m.config_hash != spec_.ConfigHash() || m.param_count != model_.global_param_count()) {
    return Status::InvalidArgument(dir + " belongs to another model, data order or world (config " +
                                   m.config_hash + ", this job " + spec_.ConfigHash() + ")");
  }
  // Parameters: the replicated region, then this rank's experts.
  const float* p = loaded->section(0);
  auto& params = model_.params();
  const int64_t R = model_.replicated_count();
  K::FromHost(params.data(), p, static_cast<size_t>(R));
  const int64_t g = model_.GlobalIndex(R);
  K::FromHost(params.data() + R, p + g, params.size() - static_cast<size_t>(R));

  const int mi = loaded->FindSection("adam_m"), vi = loaded->FindSection("adam_v");
  const bool ckpt_moments = mi >= 0 && vi >= 0;
  if (opt_->has_moments() && ckpt_moments) {
    opt_->LoadMoments(loaded->section(mi), loaded->section(vi), m.optimizer_step);
  } else {
    opt_->LoadMoments(nullptr, nullptr, 0);
    if (m.optimizer != opt_->kind()) {
      notes_.push_back("optimizer switched from " + m.optimizer + " to " + opt_->kind() +
                       " at step " + std::to_string(m.step) +
                       (opt_->has_moments() ? ": moments start from zero"
                                            : ": the checkpoint's moments are dropped"));
    }
  }
  if (inherit_lr_scale_) {
    options_.lr_scale = m.lr_scale;
  } else if (m.lr_scale != options_.lr_scale) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "learning rate scale %.6g (was %.6g) from step %lld",
                  options_.lr_scale, m.lr_scale, static_cast<long long>(m.step));
    notes_.push_back(buf);
  }
  for (const auto& n : notes_) log_->warn("{}", n);
  step_ = m.step;
  tokens_seen_ = m.tokens_seen;
  log_->info("resumed from {} at step {} ({} bytes verified)", dir, step_, loaded->bytes);
  return Status::Ok();
}

template <class K>
float TrainerT<K>::LearningRate(int64_t step) const {
  const double lr = spec_.optimizer.lr * options_.lr_scale;
  const int w = spec_.schedule.warmup_steps;
  if (w > 0 && step < w) return static_cast<float>(lr * static_cast<double>(step + 1) / w);
  return static_cast<float>(lr);
}

template <class K>
StepStats TrainerT<K>::Step() {
  const int B = spec_.schedule.batch_per_rank, T = spec_.model.seq_len;
  const int W = coll_->world(), rank = coll_->rank();
  FillBatch(data_, static_cast<uint64_t>(step_), rank, W, B, T, &inputs_, &targets_);
  const float mine[2] = {model_.ForwardBackward(inputs_.data(), targets_.data(), B, T),
                         model_.aux_loss()};
  StepStats s;
  s.dropped_choices = model_.dropped_choices();
  s.lr = LearningRate(step_);
  s.grad_norm = opt_->Step(model_.params().data(), model_.grads().data(), s.lr);
  // The mean over ranks, added in rank order (host values whatever K is).
  std::vector<float> all(2 * W);
  coll_->AllgatherBytes(mine, sizeof(mine), all.data());
  float loss = 0.0f, aux = 0.0f;
  for (int r = 0; r < W; ++r) {
    loss += all[2 * r];
    aux += all[2 * r + 1];
  }
  s.loss = loss / static_cast<float>(W);
  s.aux_loss = aux / static_cast<float>(W);
  ++step_;
  tokens_seen_ += static_cast<int64_t>(B) * T * W;
  s.step = step_;
  return s;
}

template <class K>
Result<std::string> TrainerT<K>::Save() {
  const std::string tmp = options_.checkpoint_dir + "/" + checkpoint::StepDirName(step_) + ".tmp";
  const auto sections = opt_->Sections();
  const auto ranges = opt_->OwnedRanges();
  auto shard = checkpoint::WriteShard(tmp, coll_->rank(), static_cast<int>(sections.size()), ranges,
                                      opt_->Pieces(model_.params().data(), &staging_));
  if (!shard.ok()) log_->error("checkpoint shard write failed: {}", shard.status().ToString());
  // Everyone learns every shard's (ok, checksum, first expert index); the
  // ranges follow from the layout.
  const uint64_t mine[3] = {shard.ok() ? 1u : 0u, shard.ok() ? shard->xxh3 : 0,
                            static_cast<uint64_t>(model_.GlobalIndex(model_.replicated_count()))};
  const int W = coll_->world();
  std::vector<uint64_t> all(3 * W);
  coll_->AllgatherBytes(mine, sizeof(mine), all.data());
  for (int r = 0; r < W; ++r) {
    if (all[3 * r] != 1) {
      return Status::IoError("checkpoint at step " + std::to_string(step_) + " abandoned: rank " +
                             std::to_string(r) + " failed its shard");
    }
  }
  if (coll_->rank() != 0) return std::string();
  checkpoint::Manifest m;
  m.step = step_;
  m.tokens_seen = tokens_seen_;
  m.data_position = step_ * static_cast<int64_t>(spec_.schedule.batch_per_rank) * W;
  m.seed = spec_.data.seed;
  m.optimizer = opt_->kind();
  m.optimizer_step = opt_->has_moments() ? opt_->step() : 0;
  m.lr_scale = options_.lr_scale;
  m.config_hash = spec_.ConfigHash();
  m.world_size = W;
  m.param_count = model_.global_param_count();
  m.sections = sections;
  for (const auto& t : model_.GlobalTensors()) m.tensors.push_back({t.name, t.shape, t.offset});
  for (int r = 0; r < W; ++r) {
    checkpoint::ShardEntry e;
    e.rank = r;
    e.file = "shard-" + std::to_string(r) + ".bin";
    e.ranges = opt_->RangesOf(r, static_cast<int64_t>(all[3 * r + 2]));
    e.xxh3 = all[3 * r + 1];
    m.shards.push_back(e);
  }
  return checkpoint::CommitCheckpoint(options_.checkpoint_dir, m);
}

template <class K>
std::string TrainerT<K>::ParamsDigest() {
  staging_.resize(model_.params().size());
  K::ToHost(staging_.data(), model_.params().data(), staging_.size());
  const auto& p = staging_;
  const int64_t R = model_.replicated_count();
  const uint64_t own = XXH3_64bits(p.data() + R, (p.size() - R) * sizeof(float));
  std::vector<uint64_t> all(coll_->world() + 1);
  coll_->AllgatherBytes(&own, sizeof(own), all.data() + 1);
  all[0] = XXH3_64bits(p.data(), R * sizeof(float));
  return trainer_detail::Hex64(XXH3_64bits(all.data(), all.size() * sizeof(uint64_t)));
}

template <class K>
int64_t TrainerT<K>::state_bytes() const {
  return static_cast<int64_t>(model_.params().size() * 2 * sizeof(float)) + opt_->state_bytes();
}

template <class K>
int64_t TrainerT<K>::checkpoint_bytes() const {
  return static_cast<int64_t>(opt_->Sections().size()) * model_.global_param_count() *
         static_cast<int64_t>(sizeof(float));
}

}  // namespace vigil::trainer
