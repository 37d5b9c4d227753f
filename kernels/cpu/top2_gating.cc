#include "kernels/cpu/top2_gating.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/shared_math.h"

namespace vigil::kernels::cpu {
namespace {

long Row(const int32_t* expert, const int32_t* slot, int n, int k, int capacity) {
  return static_cast<long>(expert[2 * n + k]) * capacity + slot[2 * n + k];
}

}  // namespace

int Top2Capacity(int N, int E, double capacity_factor) {
  const double c = std::ceil(capacity_factor * 2.0 * N / E);
  return std::max(1, static_cast<int>(c));
}

float Top2GatingForward(float* probs, int32_t* expert, int32_t* slot, float* gate,
                        const float* logits, int N, int E, int capacity) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    RouteToken(logits + static_cast<long>(n) * E, probs + static_cast<long>(n) * E, E,
               expert + 2 * n, gate + 2 * n);
  }
  // Slots: all first choices in token order, then all second choices.
  std::vector<int> used(E, 0);
  for (int k = 0; k < 2; ++k) {
    for (int n = 0; n < N; ++n) {
      const int e = expert[2 * n + k];
      slot[2 * n + k] = used[e] < capacity ? used[e]++ : -1;
    }
  }
  // aux = E * sum_e f_e * P_e, summed in a fixed order.
  std::vector<double> f(E, 0.0), P(E, 0.0);
  for (int n = 0; n < N; ++n) {
    f[expert[2 * n]] += 1.0;
    for (int e = 0; e < E; ++e) P[e] += probs[static_cast<long>(n) * E + e];
  }
  double aux = 0.0;
  for (int e = 0; e < E; ++e) aux += (f[e] / N) * (P[e] / N);
  return static_cast<float>(E * aux);
}

void Top2GatingBackward(float* dlogits, const float* dgate, const float* probs,
                        const int32_t* expert, int N, int E, float aux_weight) {
  // d(aux_weight * aux)/d probs[n,e] = aux_weight * E * f_e / N, the same for every n.
  std::vector<float> daux(E, 0.0f);
  for (int n = 0; n < N; ++n) daux[expert[2 * n]] += 1.0f;
  for (int e = 0; e < E; ++e)
    daux[e] = aux_weight * static_cast<float>(E) * (daux[e] / N) / static_cast<float>(N);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    RouteTokenBackward(dlogits + static_cast<long>(n) * E, probs + static_cast<long>(n) * E,
                       daux.data(), E, expert + 2 * n, dgate + 2 * n);
  }
}

void MoeDispatchForward(float* dispatched, const float* x, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E) {
  std::memset(dispatched, 0, sizeof(float) * static_cast<size_t>(E) * capacity * C);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    for (int k = 0; k < 2; ++k) {
      if (slot[2 * n + k] < 0) continue;
      std::memcpy(dispatched + Row(expert, slot, n, k, capacity) * C, x + static_cast<long>(n) * C,
                  sizeof(float) * C);
    }
  }
}

void MoeDispatchBackward(float* dx, const float* ddispatched, const int32_t* expert,
                         const int32_t* slot, int N, int C, int capacity) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    float* d = dx + static_cast<long>(n) * C;
    for (int k = 0; k < 2; ++k) {
      if (slot[2 * n + k] < 0) continue;
      const float* src = ddispatched + Row(expert, slot, n, k, capacity) * C;
      for (int c = 0; c < C; ++c) d[c] += src[c];
    }
  }
}

void MoeCombineForward(float* out, const float* expert_out, const float* gate,
                       const int32_t* expert, const int32_t* slot, int N, int C, int capacity) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    float* o = out + static_cast<long>(n) * C;
    std::fill(o, o + C, 0.0f);
    for (int k = 0; k < 2; ++k) {
      if (slot[2 * n + k] < 0) continue;
      const float g = gate[2 * n + k];
      const float* y = expert_out + Row(expert, slot, n, k, capacity) * C;
      for (int c = 0; c < C; ++c) o[c] += g * y[c];
    }
  }
}

void MoeCombineBackward(float* dexpert_out, float* dgate, const float* dout,
                        const float* expert_out, const float* gate, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E) {
  std::memset(dexpert_out, 0, sizeof(float) * static_cast<size_t>(E) * capacity * C);
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; ++n) {
    const float* d = dout + static_cast<long>(n) * C;
    for (int k = 0; k < 2; ++k) {
      dgate[2 * n + k] = 0.0f;
      if (slot[2 * n + k] < 0) continue;
      const long row = Row(expert, slot, n, k, capacity);
      const float* y = expert_out + row * C;
      float* dy = dexpert_out + row * C;
      const float g = gate[2 * n + k];
      float dot = 0.0f;
      for (int c = 0; c < C; ++c) {
        dot += d[c] * y[c];
        dy[c] = g * d[c];
      }
      dgate[2 * n + k] = dot;
    }
  }
}

}  // namespace vigil::kernels::cpu
