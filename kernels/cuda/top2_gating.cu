#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/top2_gating.h"
#include "kernels/shared_math.h"

namespace vigil::kernels::cuda {
namespace {

__device__ long Row(const int32_t* expert, const int32_t* slot, int n, int k, int capacity) {
  return static_cast<long>(expert[2 * n + k]) * capacity + slot[2 * n + k];
}

__global__ void RouteKernel(float* probs, int32_t* expert, float* gate, const float* logits, int N,
                            int E) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  RouteToken(logits + static_cast<long>(n) * E, probs + static_cast<long>(n) * E, E, expert + 2 * n,
             gate + 2 * n);
}

// One thread: slots in priority order, then aux = E * sum_e f_e * P_e.
// `used` is E ints of scratch.
__global__ void SlotsAndAux(int32_t* slot, float* aux, int* used, const int32_t* expert,
                            const float* probs, int N, int E, int capacity) {
  for (int e = 0; e < E; ++e) used[e] = 0;
  for (int k = 0; k < 2; ++k)
    for (int n = 0; n < N; ++n) {
      const int e = expert[2 * n + k];
      slot[2 * n + k] = used[e] < capacity ? used[e]++ : -1;
    }
  double total = 0.0;
  for (int e = 0; e < E; ++e) {
    double f = 0.0, P = 0.0;
    for (int n = 0; n < N; ++n) {
      f += expert[2 * n] == e ? 1.0 : 0.0;
      P += probs[static_cast<long>(n) * E + e];
    }
    total += (f / N) * (P / N);
  }
  *aux = static_cast<float>(E * total);
}

// daux[e] = aux_weight * E * f_e / N / N, in one thread (E counts).
__global__ void AuxGrad(float* daux, const int32_t* expert, int N, int E, float aux_weight) {
  for (int e = 0; e < E; ++e) daux[e] = 0.0f;
  for (int n = 0; n < N; ++n) daux[expert[2 * n]] += 1.0f;
  for (int e = 0; e < E; ++e)
    daux[e] = aux_weight * static_cast<float>(E) * (daux[e] / N) / static_cast<float>(N);
}

__global__ void GatingBackwardKernel(float* dlogits, const float* dgate, const float* probs,
                                     const int32_t* expert, const float* daux, int N, int E) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  RouteTokenBackward(dlogits + static_cast<long>(n) * E, probs + static_cast<long>(n) * E, daux, E,
                     expert + 2 * n, dgate + 2 * n);
}

__global__ void DispatchKernel(float* dispatched, const float* x, const int32_t* expert,
                               const int32_t* slot, int N, int C, int capacity) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= 2L * N * C) return;
  const int c = static_cast<int>(i % C), nk = static_cast<int>(i / C), n = nk / 2, k = nk % 2;
  if (slot[nk] < 0) return;
  dispatched[Row(expert, slot, n, k, capacity) * C + c] = x[static_cast<long>(n) * C + c];
}

__global__ void DispatchBackwardKernel(float* dx, const float* ddispatched, const int32_t* expert,
                                       const int32_t* slot, int N, int C, int capacity) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long>(N) * C) return;
  const int n = static_cast<int>(i / C), c = static_cast<int>(i % C);
  float d = dx[i];
  for (int k = 0; k < 2; ++k)
    if (slot[2 * n + k] >= 0) d += ddispatched[Row(expert, slot, n, k, capacity) * C + c];
  dx[i] = d;
}

__global__ void CombineKernel(float* out, const float* expert_out, const float* gate,
                              const int32_t* expert, const int32_t* slot, int N, int C,
                              int capacity) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long>(N) * C) return;
  const int n = static_cast<int>(i / C), c = static_cast<int>(i % C);
  float o = 0.0f;
  for (int k = 0; k < 2; ++k)
    if (slot[2 * n + k] >= 0)
      o += gate[2 * n + k] * expert_out[Row(expert, slot, n, k, capacity) * C + c];
  out[i] = o;
}

// One block per (token, choice): dexpert_out row and the dot product for dgate.
__global__ void CombineBackwardKernel(float* dexpert_out, float* dgate, const float* dout,
                                      const float* expert_out, const float* gate,
                                      const int32_t* expert, const int32_t* slot, int C,
                                      int capacity) {
  __shared__ float partial[32];
  const int nk = blockIdx.x, n = nk / 2, k = nk % 2;
  if (slot[nk] < 0) {
    if (threadIdx.x == 0) dgate[nk] = 0.0f;
    return;
  }
  const long row = Row(expert, slot, n, k, capacity) * C;
  const float* d = dout + static_cast<long>(n) * C;
  const float g = gate[nk];
  float dot = 0.0f;
  for (int c = threadIdx.x; c < C; c += 32) {
    dot += d[c] * expert_out[row + c];
    dexpert_out[row + c] = g * d[c];
  }
  partial[threadIdx.x] = dot;
  __syncwarp();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int i = 0; i < 32; ++i) s += partial[i];
    dgate[nk] = s;
  }
}

}  // namespace

float Top2GatingForward(float* probs, int32_t* expert, int32_t* slot, float* gate,
                        const float* logits, int N, int E, int capacity) {
  static thread_local Scratch scratch;
  float* aux = static_cast<float*>(scratch.Get(sizeof(float) + sizeof(int) * E));
  int* used = reinterpret_cast<int*>(aux + 1);
  RouteKernel<<<Blocks(N, 128), 128>>>(probs, expert, gate, logits, N, E);
  VIGIL_CUDA_LAUNCH();
  SlotsAndAux<<<1, 1>>>(slot, aux, used, expert, probs, N, E, capacity);
  VIGIL_CUDA_LAUNCH();
  float host = 0.0f;
  VIGIL_CUDA(cudaMemcpy(&host, aux, sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

void Top2GatingBackward(float* dlogits, const float* dgate, const float* probs,
                        const int32_t* expert, int N, int E, float aux_weight) {
  static thread_local Scratch scratch;
  float* daux = static_cast<float*>(scratch.Get(sizeof(float) * E));
  AuxGrad<<<1, 1>>>(daux, expert, N, E, aux_weight);
  VIGIL_CUDA_LAUNCH();
  GatingBackwardKernel<<<Blocks(N, 128), 128>>>(dlogits, dgate, probs, expert, daux, N, E);
  VIGIL_CUDA_LAUNCH();
}

void MoeDispatchForward(float* dispatched, const float* x, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E) {
  VIGIL_CUDA(cudaMemset(dispatched, 0, sizeof(float) * static_cast<size_t>(E) * capacity * C));
  DispatchKernel<<<Blocks(2L * N * C, 256), 256>>>(dispatched, x, expert, slot, N, C, capacity);
  VIGIL_CUDA_LAUNCH();
}

void MoeDispatchBackward(float* dx, const float* ddispatched, const int32_t* expert,
                         const int32_t* slot, int N, int C, int capacity) {
  DispatchBackwardKernel<<<Blocks(static_cast<long>(N) * C, 256), 256>>>(dx, ddispatched, expert,
                                                                         slot, N, C, capacity);
  VIGIL_CUDA_LAUNCH();
}

void MoeCombineForward(float* out, const float* expert_out, const float* gate,
                       const int32_t* expert, const int32_t* slot, int N, int C, int capacity) {
  CombineKernel<<<Blocks(static_cast<long>(N) * C, 256), 256>>>(out, expert_out, gate, expert, slot,
                                                                N, C, capacity);
  VIGIL_CUDA_LAUNCH();
}

void MoeCombineBackward(float* dexpert_out, float* dgate, const float* dout,
                        const float* expert_out, const float* gate, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E) {
  VIGIL_CUDA(cudaMemset(dexpert_out, 0, sizeof(float) * static_cast<size_t>(E) * capacity * C));
  CombineBackwardKernel<<<2 * N, 32>>>(dexpert_out, dgate, dout, expert_out, gate, expert, slot, C,
                                       capacity);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
