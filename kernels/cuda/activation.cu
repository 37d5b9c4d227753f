#include "kernels/cuda/activation.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/shared_math.h"

namespace vigil::kernels::cuda {
namespace {

__global__ void GeluForwardKernel(float* out, const float* inp, long N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  out[i] = Gelu(inp[i]);
}

__global__ void GeluBackwardKernel(float* dinp, const float* inp, const float* dout, long N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= N) return;
  dinp[i] += GeluGrad(inp[i]) * dout[i];
}

__global__ void ReluForwardKernel(float* out, const float* inp, long N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < N) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

__global__ void ReluBackwardKernel(float* dinp, const float* inp, const float* dout, long N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < N) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

}  // namespace

void GeluForward(float* out, const float* inp, long N) {
  GeluForwardKernel<<<Blocks(N, 256), 256>>>(out, inp, N);
  VIGIL_CUDA_LAUNCH();
}
void GeluBackward(float* dinp, const float* inp, const float* dout, long N) {
  GeluBackwardKernel<<<Blocks(N, 256), 256>>>(dinp, inp, dout, N);
  VIGIL_CUDA_LAUNCH();
}
void ReluForward(float* out, const float* inp, long N) {
  ReluForwardKernel<<<Blocks(N, 256), 256>>>(out, inp, N);
  VIGIL_CUDA_LAUNCH();
}
void ReluBackward(float* dinp, const float* inp, const float* dout, long N) {
  ReluBackwardKernel<<<Blocks(N, 256), 256>>>(dinp, inp, dout, N);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
