#include <vector>

#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/warp.cuh"

namespace vigil::kernels::cuda {
namespace {

__global__ void CrossEntropyKernel(float* dlogits, float* row_loss, const float* logits,
                                   const int32_t* targets, int V, float invN) {
  const int row = blockIdx.x;
  const float* z = logits + static_cast<long>(row) * V;
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, z[v]);
  m = BlockMax(m);
  float s = 0.0f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(z[v] - m);
  const float logsum = logf(BlockSum(s)) + m;
  const int target = targets[row];
  if (threadIdx.x == 0) row_loss[row] = logsum - z[target];
  if (!dlogits) return;
  float* dz = dlogits + static_cast<long>(row) * V;
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    dz[v] = expf(z[v] - logsum) * invN - (v == target ? invN : 0.0f);
}

}  // namespace

float CrossEntropyForwardBackward(float* dlogits, const float* logits, const int32_t* targets,
                                  int N, int V) {
  static thread_local Scratch scratch;
  float* row_loss = static_cast<float*>(scratch.Get(sizeof(float) * N));
  CrossEntropyKernel<<<N, 256>>>(dlogits, row_loss, logits, targets, V, 1.0f / N);
  VIGIL_CUDA_LAUNCH();
  std::vector<float> host(N);
  VIGIL_CUDA(cudaMemcpy(host.data(), row_loss, sizeof(float) * N, cudaMemcpyDeviceToHost));
  double total = 0.0;
  for (float l : host) total += l;
  return static_cast<float>(total / N);
}

}  // namespace vigil::kernels::cuda
