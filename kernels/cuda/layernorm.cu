#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/warp.cuh"
#include "kernels/shared_math.h"

namespace vigil::kernels::cuda {
namespace {

constexpr float kEps = 1e-5f;

__global__ void LayerNormForwardKernel(float* out, float* mean, float* rstd, const float* inp,
                                       const float* weight, const float* bias, int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + static_cast<long>(row) * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) s += x[c];
  const float m = WarpSum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) v += (x[c] - m) * (x[c] - m);
  const float r = rsqrtf(WarpSum(v) / C + kEps);
  float* o = out + static_cast<long>(row) * C;
  for (int c = lane; c < C; c += 32) o[c] = (x[c] - m) * r * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

__global__ void LayerNormBackwardInput(float* dinp, const float* dout, const float* inp,
                                       const float* weight, const float* mean, const float* rstd,
                                       int N, int C) {
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* dy = dout + static_cast<long>(row) * C;
  const float* x = inp + static_cast<long>(row) * C;
  float* dx = dinp + static_cast<long>(row) * C;
  const float m = mean[row], r = rstd[row];
  float a = 0.0f, b = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float norm = (x[c] - m) * r, dnorm = weight[c] * dy[c];
    a += dnorm;
    b += dnorm * norm;
  }
  const float dnorm_mean = WarpSum(a) / C, dnorm_norm_mean = WarpSum(b) / C;
  for (int c = lane; c < C; c += 32) {
    const float norm = (x[c] - m) * r, dnorm = weight[c] * dy[c];
    dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r;
  }
}

__global__ void LayerNormBackwardParams(float* dweight, float* dbias, const float* dout,
                                        const float* inp, const float* mean, const float* rstd,
                                        int N, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  LayerNormParamGrad(dweight, dbias, dout, inp, mean, rstd, N, C, c);
}

}  // namespace

void LayerNormForward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                      const float* bias, int N, int C) {
  LayerNormForwardKernel<<<Blocks(N, 8), 256>>>(out, mean, rstd, inp, weight, bias, N, C);
  VIGIL_CUDA_LAUNCH();
}

void LayerNormBackward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, const float* mean, const float* rstd,
                       int N, int C) {
  LayerNormBackwardInput<<<Blocks(N, 8), 256>>>(dinp, dout, inp, weight, mean, rstd, N, C);
  VIGIL_CUDA_LAUNCH();
  LayerNormBackwardParams<<<Blocks(C, 128), 128>>>(dweight, dbias, dout, inp, mean, rstd, N, C);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
