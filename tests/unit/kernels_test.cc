// Every CPU kernel's backward against central finite differences of its
// forward. Each check uses the scalar L = sum(out * r) for a fixed random r,
// so dL/dout = r goes into the backward and dL/dx is compared, at every
// input element, with (L(x + eps) - L(x - eps)) / 2 eps. Inputs span [-3, 3]
// so the non-linear parts of each op are exercised.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/top2_gating.h"
#include "worker/trainer/rng.h"

namespace vigil::kernels::cpu {
namespace {

std::vector<float> Random(size_t n, uint64_t seed, float scale) {
  trainer::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>((rng.Uniform() * 2.0 - 1.0) * scale);
  return v;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Compares `analytic` (dL/dx) with finite differences of `loss` over x.
void ExpectMatchesFiniteDifferences(std::vector<float>* x, const std::vector<float>& analytic,
                                    const std::function<double()>& loss, const char* what,
                                    double eps = 1e-2, double tol = 2e-3) {
  ASSERT_EQ(x->size(), analytic.size());
  for (size_t i = 0; i < x->size(); ++i) {
    const float saved = (*x)[i];
    (*x)[i] = saved + static_cast<float>(eps);
    const double plus = loss();
    (*x)[i] = saved - static_cast<float>(eps);
    const double minus = loss();
    (*x)[i] = saved;
    const double numeric = (plus - minus) / (2 * eps);
    ASSERT_NEAR(analytic[i], numeric, tol + 1e-2 * std::fabs(numeric)) << what << " element " << i;
  }
}

TEST(Kernels, GeluBackward) {
  const long n = 64;
  auto x = Random(n, 1, 3.0f), r = Random(n, 2, 1.0f);
  std::vector<float> out(n), dx(n, 0.0f);
  GeluBackward(dx.data(), x.data(), r.data(), n);
  ExpectMatchesFiniteDifferences(
      &x, dx,
      [&] {
        GeluForward(out.data(), x.data(), n);
        return Dot(out, r);
      },
      "gelu", 1e-3, 5e-4);
}

TEST(Kernels, ReluBackward) {
  const long n = 64;
  auto x = Random(n, 3, 3.0f), r = Random(n, 4, 1.0f);
  for (auto& v : x) {
    if (std::fabs(v) < 0.05f) v = 0.5f;  // keep away from the kink
  }
  std::vector<float> out(n), dx(n, 0.0f);
  ReluBackward(dx.data(), x.data(), r.data(), n);
  ExpectMatchesFiniteDifferences(
      &x, dx,
      [&] {
        ReluForward(out.data(), x.data(), n);
        return Dot(out, r);
      },
      "relu", 1e-3, 5e-4);
}

TEST(Kernels, MatmulBackward) {
  const int M = 5, K = 7, N = 3;
  auto x = Random(M * K, 5, 3.0f), w = Random(N * K, 6, 1.0f), b = Random(N, 7, 1.0f),
       r = Random(M * N, 8, 1.0f);
  std::vector<float> out(M * N), dx(M * K, 0.0f), dw(N * K, 0.0f), db(N, 0.0f);
  MatmulBackward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), M, K, N);
  auto loss = [&] {
    MatmulForward(out.data(), x.data(), w.data(), b.data(), M, K, N);
    return Dot(out, r);
  };
  ExpectMatchesFiniteDifferences(&x, dx, loss, "matmul dinp");
  ExpectMatchesFiniteDifferences(&w, dw, loss, "matmul dweight");
  ExpectMatchesFiniteDifferences(&b, db, loss, "matmul dbias");
}

TEST(Kernels, LayerNormBackward) {
  const int N = 4, C = 9;
  auto x = Random(N * C, 9, 3.0f), w = Random(C, 10, 2.0f), b = Random(C, 11, 1.0f),
       r = Random(N * C, 12, 1.0f);
  std::vector<float> out(N * C), mean(N), rstd(N), dx(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
  LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  LayerNormBackward(dx.data(), dw.data(), db.data(), r.data(), x.data(), w.data(), mean.data(),
                    rstd.data(), N, C);
  auto loss = [&] {
    LayerNormForward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return Dot(out, r);
  };
  ExpectMatchesFiniteDifferences(&x, dx, loss, "layernorm dinp", 1e-3, 2e-3);
  ExpectMatchesFiniteDifferences(&w, dw, loss, "layernorm dweight", 1e-3, 2e-3);
  ExpectMatchesFiniteDifferences(&b, db, loss, "layernorm dbias", 1e-3, 2e-3);
}

TEST(Kernels, AttentionBackward) {
  const int B = 2, T = 4, C = 6, NH = 2;
  auto qkv = Random(B * T * 3 * C, 13, 2.0f), r = Random(B * T * C, 14, 1.0f);
  std::vector<float> out(B * T * C), att(B * NH * T * T), datt(att.size()), dqkv(qkv.size(), 0.0f);
  AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  AttentionBackward(dqkv.data(), datt.data(), r.data(), qkv.data(), att.data(), B, T, C, NH);
  ExpectMatchesFiniteDifferences(
      &qkv, dqkv,
      [&] {
        AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
        return Dot(out, r);
      },
      "attention", 1e-3, 2e-3);
}

TEST(Kernels, AttentionIsCausal) {
  const int B = 1, T = 5, C = 4, NH = 1;
  auto qkv = Random(T * 3 * C, 15, 1.0f);
  std::vector<float> out(T * C), att(T * T), out2(T * C);
  AttentionForward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  for (int c = 0; c < 3 * C; ++c)
    qkv[(T - 1) * 3 * C + c] += 1.0f;  // change only the last position
  AttentionForward(out2.data(), att.data(), qkv.data(), B, T, C, NH);
  for (int i = 0; i < (T - 1) * C; ++i)
    EXPECT_EQ(out[i], out2[i]) << "position " << i / C << " saw the future";
}

TEST(Kernels, CrossEntropyGradient) {
  const int N = 3, V = 11;
  auto z = Random(N * V, 16, 3.0f);
  std::vector<int32_t> targets = {0, 5, 10};
  std::vector<float> dz(N * V);
  const float loss = CrossEntropyForwardBackward(dz.data(), z.data(), targets.data(), N, V);
  EXPECT_GT(loss, 0.0f);
  ExpectMatchesFiniteDifferences(
      &z, dz,
      [&] {
        return static_cast<double>(
            CrossEntropyForwardBackward(nullptr, z.data(), targets.data(), N, V));
      },
      "cross entropy", 1e-3, 5e-4);
}

TEST(Kernels, CrossEntropyOfUniformLogitsIsLogV) {
  std::vector<float> z(2 * 256, 0.0f);
  std::vector<int32_t> t = {3, 200};
  EXPECT_NEAR(CrossEntropyForwardBackward(nullptr, z.data(), t.data(), 2, 256), std::log(256.0),
              1e-5);
}

TEST(Kernels, ClipGradNormScalesToTheLimit) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_FLOAT_EQ(ClipGradNorm(g.data(), 2, 1.0f), 5.0f);
  EXPECT_NEAR(std::hypot(g[0], g[1]), 1.0, 1e-5);
  std::vector<float> small = {0.3f, 0.4f};
  ClipGradNorm(small.data(), 2, 1.0f);
  EXPECT_FLOAT_EQ(small[0], 0.3f);
}

TEST(Kernels, AdamWFirstStepMovesByTheLearningRate) {
  // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
  std::vector<float> p = {1.0f, -1.0f}, g = {0.5f, -2.0f}, m(2, 0.0f), v(2, 0.0f);
  AdamWUpdate(p.data(), g.data(), m.data(), v.data(), 2, 0.1f, 0.9f, 0.95f, 1e-8f, 0.0f, 1);
  EXPECT_NEAR(p[0], 0.9f, 1e-6);
  EXPECT_NEAR(p[1], -0.9f, 1e-6);
}

// Three tokens, three experts, one slot each; worked out by hand.
//   token 0: logits [2, 1, 0] -> experts 0 then 1
//   token 1: logits [0, 2, 1] -> experts 1 then 2
//   token 2: logits [2, 0, 1] -> experts 0 then 2
// First choices fill slots first: t0 -> e0, t1 -> e1, t2 finds e0 full.
// Second choices: t0's e1 is full, t1 takes e2, t2's e2 is full. Token 2 is
// dropped twice and passes on the residual path only.
TEST(Top2Gating, RoutesDropsAndBalancesAsWorkedOutByHand) {
  const int N = 3, E = 3, C = 2, cap = 1;
  const std::vector<float> logits = {2, 1, 0, 0, 2, 1, 2, 0, 1};
  std::vector<float> probs(N * E), gate(2 * N);
  std::vector<int32_t> expert(2 * N), slot(2 * N);
  const float aux = Top2GatingForward(probs.data(), expert.data(), slot.data(), gate.data(),
                                      logits.data(), N, E, cap);
  EXPECT_EQ(expert, (std::vector<int32_t>{0, 1, 1, 2, 0, 2}));
  EXPECT_EQ(slot, (std::vector<int32_t>{0, -1, 0, 0, -1, -1}));
  const double e = std::exp(1.0), s = e * e + e + 1;
  // Renormalised top-2 weights: e^2 / (e^2 + e) = e / (e + 1) for every token here.
  for (int i = 0; i < 2 * N; i += 2) {
    EXPECT_NEAR(gate[i], e / (e + 1), 1e-6);
    EXPECT_NEAR(gate[i + 1], 1 / (e + 1), 1e-6);
  }
  // f = [2/3, 1/3, 0]; P_0 = (2e^2 + 1) / 3s, P_1 = 1/3; aux = 3 (f0 P0 + f1 P1).
  const double P0 = (2 * e * e + 1) / (3 * s);
  EXPECT_NEAR(aux, 3 * (2.0 / 3 * P0 + 1.0 / 9), 1e-6);
  // A uniform router scores exactly 1.
  const std::vector<float> flat(4 * 4, 0.0f);
  std::vector<float> p4(16), g4(8);
  std::vector<int32_t> e4(8), s4(8);
  EXPECT_NEAR(Top2GatingForward(p4.data(), e4.data(), s4.data(), g4.data(), flat.data(), 4, 4, 8),
              1.0, 1e-6);

  // Combine: token 0 gets only its first expert's output, at its gate
  // weight; token 2 gets nothing.
  const std::vector<float> expert_out = {1, 2, 3, 4, 5, 6};  // rows: e0, e1, e2 (one slot each)
  std::vector<float> out(N * C, -1.0f);
  MoeCombineForward(out.data(), expert_out.data(), gate.data(), expert.data(), slot.data(), N, C,
                    cap);
  EXPECT_NEAR(out[0], gate[0] * 1, 1e-6);
  EXPECT_NEAR(out[2], gate[2] * 3 + gate[3] * 5, 1e-6);
  EXPECT_EQ(out[4], 0.0f);
  EXPECT_EQ(out[5], 0.0f);
}

TEST(Top2Gating, CapacityGivesFirstChoicesPriority) {
  EXPECT_EQ(Top2Capacity(10, 4, 1.0), 5);
  EXPECT_EQ(Top2Capacity(10, 4, 0.5), 3);
  EXPECT_EQ(Top2Capacity(1, 64, 0.1), 1);
}

// L = sum(out * r) + aux_weight * aux, through combine and gating, against
// finite differences in the router logits and the experts' outputs. Logits
// are spread so that eps never changes which experts are chosen.
TEST(Top2Gating, BackwardMatchesFiniteDifferences) {
  const int N = 6, E = 4, C = 3, cap = Top2Capacity(N, E, 0.75);
  auto logits = Random(N * E, 21, 3.0f), expert_out = Random(E * cap * C, 22, 1.0f),
       r = Random(N * C, 23, 1.0f);
  const float aux_weight = 0.5f;
  std::vector<float> probs(N * E), gate(2 * N), out(N * C);
  std::vector<int32_t> expert(2 * N), slot(2 * N);
  auto loss = [&] {
    const float aux = Top2GatingForward(probs.data(), expert.data(), slot.data(), gate.data(),
                                        logits.data(), N, E, cap);
    MoeCombineForward(out.data(), expert_out.data(), gate.data(), expert.data(), slot.data(), N, C,
                      cap);
    return Dot(out, r) + aux_weight * aux;
  };
  loss();
  ASSERT_GT(std::count(slot.begin(), slot.end(), -1), 0) << "the case should drop some choices";
  std::vector<float> dexpert_out(E * cap * C), dgate(2 * N), dlogits(N * E);
  MoeCombineBackward(dexpert_out.data(), dgate.data(), r.data(), expert_out.data(), gate.data(),
                     expert.data(), slot.data(), N, C, cap, E);
  Top2GatingBackward(dlogits.data(), dgate.data(), probs.data(), expert.data(), N, E, aux_weight);
  ExpectMatchesFiniteDifferences(&logits, dlogits, loss, "router logits", 1e-3, 1e-3);
  ExpectMatchesFiniteDifferences(&expert_out, dexpert_out, loss, "expert outputs", 1e-3, 1e-3);
}

TEST(Top2Gating, DispatchBackwardGathersWhatForwardScattered) {
  const int N = 5, E = 3, C = 2, cap = 2;
  auto logits = Random(N * E, 31, 3.0f), x = Random(N * C, 32, 1.0f),
       r = Random(E * cap * C, 33, 1.0f);
  std::vector<float> probs(N * E), gate(2 * N), dispatched(E * cap * C), dx(N * C, 0.0f);
  std::vector<int32_t> expert(2 * N), slot(2 * N);
  Top2GatingForward(probs.data(), expert.data(), slot.data(), gate.data(), logits.data(), N, E,
                    cap);
  MoeDispatchBackward(dx.data(), r.data(), expert.data(), slot.data(), N, C, cap);
  ExpectMatchesFiniteDifferences(
      &x, dx,
      [&] {
        MoeDispatchForward(dispatched.data(), x.data(), expert.data(), slot.data(), N, C, cap, E);
        return Dot(dispatched, r);
      },
      "dispatch", 1e-3, 5e-4);
}

}  // namespace
}  // namespace vigil::kernels::cpu
