#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/residual.h"

namespace vigil::kernels::cuda {
namespace {

__global__ void ResidualKernel(float* out, const float* a, const float* b, long N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < N) out[i] = a[i] + b[i];
}

}  // namespace

void ResidualForward(float* out, const float* a, const float* b, long N) {
  ResidualKernel<<<Blocks(N, 256), 256>>>(out, a, b, N);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
