// The trainer's math: gradients against central finite differences,
// determinism, and learning on the synthetic corpus.
#include "worker/trainer/model.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "kernels/cpu/optimizer.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/rng.h"
#include "worker/trainer/synthetic_data.h"

namespace vigil::trainer {
namespace {

ModelConfig Tiny(bool relu) { return ModelConfig{16, 6, 8, 2, 2, relu}; }

// GLaM-style: block 1 of 2 is a top-2 MoE of 4 experts, with capacity tight
// enough that some choices are dropped.
ModelConfig TinyMoe() {
  ModelConfig c = Tiny(false);
  c.experts = 4;
  c.moe_every = 2;
  c.capacity_factor = 0.75;
  c.aux_loss_weight = 0.1f;
  return c;
}

void RandomBatch(int B, int T, int V, uint64_t seed, std::vector<int32_t>* in,
                 std::vector<int32_t>* tgt) {
  Rng rng(seed);
  in->resize(B * T);
  tgt->resize(B * T);
  for (auto& x : *in) x = static_cast<int32_t>(rng.Next() % V);
  for (auto& x : *tgt) x = static_cast<int32_t>(rng.Next() % V);
}

// The loss the gradients are of: cross-entropy plus the weighted
// load-balancing losses of the MoE blocks.
double TotalLoss(DecoderModel& model, const std::vector<int32_t>& in,
                 const std::vector<int32_t>& tgt, int B, int T) {
  const double ce = model.Loss(in.data(), tgt.data(), B, T);
  int moe_layers = 0;
  for (int l = 0; l < model.config().layers; ++l) moe_layers += model.config().IsMoeLayer(l);
  return ce + static_cast<double>(model.config().aux_loss_weight) * model.aux_loss() * moe_layers;
}

// Every parameter tensor gets checked at a few positions. Float arithmetic
// with eps = 1e-2 gives central differences good to ~1e-4 here (1e-3 for
// MoE models, see below).
void CheckGradients(const ModelConfig& cfg) {
  DecoderModel model(cfg);
  model.InitParameters(3, 0.3f);  // large init so every path carries signal
  std::vector<int32_t> in, tgt;
  const int B = 2, T = 5;
  RandomBatch(B, T, 16, 11, &in, &tgt);
  model.ForwardBackward(in.data(), tgt.data(), B, T);
  const std::vector<float> grads = model.grads();
  const float eps = cfg.experts ? 1e-3f : 1e-2f;
  int checked = 0;
  for (const auto& t : model.tensors()) {
    for (int64_t k : {int64_t{0}, t.numel() / 2, t.numel() - 1}) {
      const int64_t i = t.offset + k;
      float& p = model.params()[i];
      const float saved = p;
      p = saved + eps;
      const double plus = TotalLoss(model, in, tgt, B, T);
      p = saved - eps;
      const double minus = TotalLoss(model, in, tgt, B, T);
      p = saved;
      const double numeric = (plus - minus) / (2.0 * eps);
      EXPECT_NEAR(grads[i], numeric, 2e-3 + 2e-2 * std::fabs(numeric))
          << t.name << "[" << k << "] relu=" << cfg.relu << " experts=" << cfg.experts;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * static_cast<int>(model.tensors().size()));
}

TEST(DecoderModel, GeluGradientsMatchFiniteDifferences) { CheckGradients(Tiny(false)); }
TEST(DecoderModel, ReluGradientsMatchFiniteDifferences) { CheckGradients(Tiny(true)); }

// Router, experts and the load-balancing loss, with dropped choices. The
// routing is piecewise constant in the parameters, so the MoE check uses
// eps = 1e-3: at 1e-2 a few perturbations upstream of the router flip a
// near-tied choice and the difference quotient jumps (by ~2, not ~1e-3).
TEST(DecoderModel, MoeGradientsMatchFiniteDifferences) {
  DecoderModel probe(TinyMoe());
  probe.InitParameters(3, 0.3f);
  std::vector<int32_t> in, tgt;
  RandomBatch(2, 5, 16, 11, &in, &tgt);
  probe.ForwardBackward(in.data(), tgt.data(), 2, 5);
  EXPECT_GT(probe.dropped_choices(), 0);
  EXPECT_GT(probe.aux_loss(), 0.0f);
  CheckGradients(TinyMoe());
}

TEST(DecoderModel, MoeLayoutPutsExpertsAfterEverythingElse) {
  DecoderModel model(TinyMoe());
  const auto tensors = model.GlobalTensors();
  EXPECT_EQ(model.replicated_count(), static_cast<int64_t>(model.params().size()));
  EXPECT_EQ(model.global_param_count(), static_cast<int64_t>(model.params().size()));
  bool seen_expert = false;
  for (const auto& t : tensors) {
    const bool expert = t.name.find(".moe.expert.") != std::string::npos;
    EXPECT_FALSE(seen_expert && !expert) << t.name << " comes after an expert";
    seen_expert |= expert;
  }
  EXPECT_TRUE(seen_expert);
  EXPECT_EQ(tensors.back().name, "h.1.moe.expert.3.proj.bias");
}

// Mean cross-entropy of `rows` rows of logits against their targets, in double.
double CrossEntropy(const float* logits, const int32_t* targets, int rows, int V) {
  double total = 0;
  for (int r = 0; r < rows; ++r) {
    const float* z = logits + static_cast<size_t>(r) * V;
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v]));
    total += std::log(sum) - z[targets[r]];
  }
  return total / rows;
}

// A sequence shorter than max_seq runs on the same weights and positions as
// the first positions of a full-length one: the model is causal, so a
// prefix's logits do not depend on the tokens after it, and the loss of the
// prefix is the cross-entropy of the long sequence's first rows. A shorter
// run that read other position embeddings, other weights or stale
// activations of another shape would change them.
TEST(DecoderModel, ShorterSequencesUseTheSameWeights) {
  const ModelConfig cfg = Tiny(false);
  const int T = cfg.max_seq, V = cfg.vocab;
  DecoderModel model(cfg);
  model.InitParameters(5, 0.3f);  // large init: logits that differ by position and token
  std::vector<int32_t> in, tgt;
  RandomBatch(1, T, V, 1, &in, &tgt);
  model.Loss(in.data(), tgt.data(), 1, T);
  const std::vector<float> full = model.logits();
  ASSERT_EQ(full.size(), static_cast<size_t>(T) * V);
  for (int k : {1, 3, T - 1}) {
    const float loss = model.Loss(in.data(), tgt.data(), 1, k);
    const std::vector<float> prefix = model.logits();
    ASSERT_EQ(prefix.size(), static_cast<size_t>(k) * V);
    for (size_t i = 0; i < prefix.size(); ++i) {
      ASSERT_NEAR(prefix[i], full[i], 1e-5f + 1e-5f * std::fabs(full[i]))
          << "prefix of " << k << ", position " << i / V << ", token " << i % V;
    }
    EXPECT_NEAR(loss, CrossEntropy(full.data(), tgt.data(), k, V), 1e-5) << "prefix of " << k;
  }
  // Different tokens after the prefix do not reach it; they do change the rest.
  std::vector<int32_t> other = in;
  for (int t = 3; t < T; ++t) other[t] = (other[t] + 1) % V;
  model.Loss(other.data(), tgt.data(), 1, T);
  const std::vector<float> changed = model.logits();
  for (size_t i = 0; i < static_cast<size_t>(3) * V; ++i) ASSERT_NEAR(changed[i], full[i], 1e-5f);
  bool later_differ = false;
  for (size_t i = static_cast<size_t>(3) * V; i < changed.size(); ++i)
    later_differ = later_differ || std::fabs(changed[i] - full[i]) > 1e-3f;
  EXPECT_TRUE(later_differ) << "the test's tokens do not reach the logits at all";
  // Back at full length, the shape changes left nothing behind.
  model.Loss(in.data(), tgt.data(), 1, T);
  EXPECT_EQ(model.logits(), full);
}

TEST(DecoderModel, SameSeedSameBitsSameLoss) {
  DecoderModel a(Tiny(false)), b(Tiny(false));
  a.InitParameters(42, 0.02f);
  b.InitParameters(42, 0.02f);
  ASSERT_EQ(a.params(), b.params());
  std::vector<int32_t> in, tgt;
  RandomBatch(2, 6, 16, 3, &in, &tgt);
  const float la = a.ForwardBackward(in.data(), tgt.data(), 2, 6);
  const float lb = b.ForwardBackward(in.data(), tgt.data(), 2, 6);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a.grads(), b.grads());
}

// Kernels split work by output element, never inside a sum: the thread
// count must not change a single bit (ranks on different hosts may run with
// different counts, and resume must stay exact).
TEST(DecoderModel, ThreadCountDoesNotChangeABit) {
  ModelConfig cfg{64, 16, 32, 2, 4, false};
  std::vector<int32_t> in, tgt;
  RandomBatch(4, 16, 64, 9, &in, &tgt);
  std::vector<float> grads[2], params[2];
  float loss[2];
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    DecoderModel model(cfg);
    model.InitParameters(4, 0.05f);
    loss[threads - 1] = model.ForwardBackward(in.data(), tgt.data(), 4, 16);
    const long n = static_cast<long>(model.params().size());
    std::vector<float> m(n), v(n);
    kernels::cpu::ClipGradNorm(model.grads().data(), n, 0.5f);
    kernels::cpu::AdamWUpdate(model.params().data(), model.grads().data(), m.data(), v.data(), n,
                              1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
    grads[threads - 1] = model.grads();
    params[threads - 1] = model.params();
  }
  omp_set_num_threads(1);
  EXPECT_EQ(loss[0], loss[1]);
  EXPECT_EQ(grads[0], grads[1]);
  EXPECT_EQ(params[0], params[1]);
}

TEST(SyntheticCorpus, SamplesArePureFunctionsOfTheIndex) {
  SyntheticCorpus c(7, 256);
  std::vector<int32_t> x(33), y(33);
  c.Sample(1000, 32, x.data());
  c.Sample(5, 32, y.data());
  c.Sample(1000, 32, y.data());
  EXPECT_EQ(x, y);
  for (int32_t t : x) EXPECT_LT(t, c.symbols());
  EXPECT_NEAR(c.EntropyRateNats().value(), 1.2130, 1e-4);
}

// A single process learns the corpus to near its entropy floor: the model,
// the kernels and AdamW together do what training is for.
TEST(DecoderModel, LearnsTheSyntheticCorpusToNearItsEntropyFloor) {
  ModelConfig cfg{256, 16, 32, 1, 2, false};
  DecoderModel model(cfg);
  model.InitParameters(1, 0.02f);
  SyntheticCorpus corpus(1234, 256);
  std::vector<float> m(model.params().size()), v(model.params().size());
  std::vector<int32_t> in, tgt;
  float loss = 0;
  for (int step = 0; step < 400; ++step) {
    FillBatch(corpus, step, 0, 1, 16, 16, &in, &tgt);
    loss = model.ForwardBackward(in.data(), tgt.data(), 16, 16);
    const long n = static_cast<long>(model.params().size());
    kernels::cpu::ClipGradNorm(model.grads().data(), n, 1.0f);
    kernels::cpu::AdamWUpdate(model.params().data(), model.grads().data(), m.data(), v.data(), n,
                              1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step + 1);
  }
  // Held-out batch: an index range the loop never used.
  FillBatch(corpus, 100000, 0, 1, 32, 16, &in, &tgt);
  const float held_out = model.Loss(in.data(), tgt.data(), 32, 16);
  // Uniform guessing costs ln(256) = 5.55; the floor is 1.213 (plus the
  // unpredictable first token of each sequence, 1/16 * ln(64) = 0.26).
  EXPECT_LT(held_out, corpus.EntropyRateNats().value() + 0.45) << "training loss " << loss;
}

}  // namespace
}  // namespace vigil::trainer
