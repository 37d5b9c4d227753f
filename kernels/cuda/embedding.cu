#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/embedding.h"

namespace vigil::kernels::cuda {
namespace {

__global__ void EmbeddingForwardKernel(float* out, const int32_t* tokens, const float* wte,
                                       const float* wpe, int BT, int T, int C) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long>(BT) * C) return;
  const int bt = static_cast<int>(i / C), c = static_cast<int>(i % C);
  out[i] = wte[static_cast<long>(tokens[bt]) * C + c] + wpe[static_cast<long>(bt % T) * C + c];
}

// dwpe[t, c] += sum over b of dout[b, t, c], b in order.
__global__ void PositionGrad(float* dwpe, const float* dout, int B, int T, int C) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= static_cast<long>(T) * C) return;
  float sum = 0.0f;
  for (int b = 0; b < B; ++b) sum += dout[static_cast<long>(b) * T * C + i];
  dwpe[i] += sum;
}

// Block g handles the g-th distinct token: positions[begin[g] .. begin[g+1]).
__global__ void TokenGrad(float* dwte, const float* dout, const int32_t* ids, const int32_t* begin,
                          const int32_t* positions, int C) {
  const int g = blockIdx.x;
  const long row = static_cast<long>(ids[g]) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float sum = 0.0f;
    for (int p = begin[g]; p < begin[g + 1]; ++p)
      sum += dout[static_cast<long>(positions[p]) * C + c];
    dwte[row + c] += sum;
  }
}

}  // namespace

void EmbeddingForward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                      int T, int C) {
  EmbeddingForwardKernel<<<Blocks(static_cast<long>(B) * T * C, 256), 256>>>(out, tokens, wte, wpe,
                                                                             B * T, T, C);
  VIGIL_CUDA_LAUNCH();
}

void EmbeddingBackward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                       int T, int C) {
  PositionGrad<<<Blocks(static_cast<long>(T) * C, 256), 256>>>(dwpe, dout, B, T, C);
  VIGIL_CUDA_LAUNCH();
  // Group positions by token on the host: a stable sort keeps them in order.
  const int BT = B * T;
  std::vector<int32_t> host(BT), order(BT);
  VIGIL_CUDA(cudaMemcpy(host.data(), tokens, sizeof(int32_t) * BT, cudaMemcpyDeviceToHost));
  for (int i = 0; i < BT; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return host[a] < host[b]; });
  std::vector<int32_t> ids, begin;
  for (int i = 0; i < BT; ++i) {
    if (i == 0 || host[order[i]] != host[order[i - 1]]) {
      ids.push_back(host[order[i]]);
      begin.push_back(i);
    }
  }
  begin.push_back(BT);
  // One device allocation for the three index arrays, reused while large enough.
  static thread_local Scratch scratch;
  const size_t need = ids.size() + begin.size() + order.size();
  int32_t* d_ids = static_cast<int32_t*>(scratch.Get(need * sizeof(int32_t)));
  int32_t* d_begin = d_ids + ids.size();
  int32_t* d_pos = d_begin + begin.size();
  VIGIL_CUDA(cudaMemcpy(d_ids, ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  VIGIL_CUDA(
      cudaMemcpy(d_begin, begin.data(), begin.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  VIGIL_CUDA(
      cudaMemcpy(d_pos, order.data(), order.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  TokenGrad<<<static_cast<int>(ids.size()), 128>>>(dwte, dout, d_ids, d_begin, d_pos, C);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
