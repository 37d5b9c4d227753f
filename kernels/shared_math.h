// Per-element rules that the CPU and CUDA kernels must apply identically,
// written once and compiled for both (host and device under nvcc, host
// under g++): GELU and its derivative, the AdamW update, LayerNorm's
// parameter gradients, and top-2 routing of one token.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define VIGIL_HOST_DEVICE __host__ __device__
#else
#define VIGIL_HOST_DEVICE
#endif

namespace vigil::kernels {

inline constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

// GELU, tanh approximation (GPT-2).
VIGIL_HOST_DEVICE inline float Gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluScale * (x + 0.044715f * x * x * x)));
}

VIGIL_HOST_DEVICE inline float GeluGrad(float x) {
  const float th = tanhf(kGeluScale * (x + 0.044715f * x * x * x));
  return 0.5f * (1.0f + th) +
         0.5f * x * (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
}

// One AdamW step of one parameter; c1 and c2 are the bias corrections
// 1 - beta1^t and 1 - beta2^t.
VIGIL_HOST_DEVICE inline void AdamWElement(float& p, float g, float& m, float& v, float lr,
                                           float beta1, float beta2, float eps, float weight_decay,
                                           float c1, float c2) {
  m = beta1 * m + (1.0f - beta1) * g;
  v = beta2 * v + (1.0f - beta2) * g * g;
  const float mhat = m / c1, vhat = v / c2;
  p -= lr * (mhat / (sqrtf(vhat) + eps) + weight_decay * p);
}

// LayerNorm's parameter gradients for column c: summed over the N rows in
// row order (accumulated into dweight[c] and dbias[c]).
VIGIL_HOST_DEVICE inline void LayerNormParamGrad(float* dweight, float* dbias, const float* dout,
                                                 const float* inp, const float* mean,
                                                 const float* rstd, int N, int C, int c) {
  float dw = 0.0f, db = 0.0f;
  for (int i = 0; i < N; ++i) {
    const float dy = dout[static_cast<long>(i) * C + c];
    dw += (inp[static_cast<long>(i) * C + c] - mean[i]) * rstd[i] * dy;
    db += dy;
  }
  dweight[c] += dw;
  dbias[c] += db;
}

// Softmax of one token's router logits into p[E], its two most probable
// experts (ties to the lower index) and their renormalised weights.
VIGIL_HOST_DEVICE inline void RouteToken(const float* logits, float* p, int E, int32_t* expert,
                                         float* gate) {
  float mx = logits[0];
  for (int e = 1; e < E; ++e) mx = logits[e] > mx ? logits[e] : mx;
  float sum = 0.0f;
  for (int e = 0; e < E; ++e) {
    p[e] = expf(logits[e] - mx);
    sum += p[e];
  }
  const float inv = 1.0f / sum;
  for (int e = 0; e < E; ++e) p[e] *= inv;
  int first = 0;
  for (int e = 1; e < E; ++e)
    if (p[e] > p[first]) first = e;
  int second = first == 0 ? 1 : 0;
  for (int e = 0; e < E; ++e)
    if (e != first && p[e] > p[second]) second = e;
  expert[0] = first;
  expert[1] = second;
  const float s = p[first] + p[second];
  gate[0] = p[first] / s;
  gate[1] = p[second] / s;
}

// The gradient through one token's routing: dl[E] (overwritten) from the
// aux-loss gradient daux[E], the gate gradients dgate[2] and the softmax.
VIGIL_HOST_DEVICE inline void RouteTokenBackward(float* dl, const float* p, const float* daux,
                                                 int E, const int32_t* expert, const float* dgate) {
  for (int e = 0; e < E; ++e) dl[e] = daux[e];
  const int a = expert[0], b = expert[1];
  const float s = p[a] + p[b], s2 = s * s;
  dl[a] += (dgate[0] - dgate[1]) * p[b] / s2;
  dl[b] += (dgate[1] - dgate[0]) * p[a] / s2;
  float dot = 0.0f;
  for (int e = 0; e < E; ++e) dot += p[e] * dl[e];
  for (int e = 0; e < E; ++e) dl[e] = p[e] * (dl[e] - dot);
}

}  // namespace vigil::kernels
