#include <cmath>
#include <vector>

#include "kernels/cpu/optimizer.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/optimizer.h"
#include "kernels/shared_math.h"

namespace vigil::kernels::cuda {
namespace {

constexpr int kBlocks = 256, kThreads = 256;

__global__ void AdamWKernel(float* params, const float* grads, float* m, float* v, long n, float lr,
                            float beta1, float beta2, float eps, float weight_decay, float c1,
                            float c2) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  AdamWElement(params[i], grads[i], m[i], v[i], lr, beta1, beta2, eps, weight_decay, c1, c2);
}

__global__ void SgdKernel(float* params, const float* grads, long n, float lr, float weight_decay) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) params[i] -= lr * (grads[i] + weight_decay * params[i]);
}

__global__ void ScaleKernel(float* x, long n, float s) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] *= s;
}

// Each block sums a strided slice in double, then a fixed tree in shared memory.
__global__ void SquaresKernel(double* partial, const float* x, long n) {
  __shared__ double s[kThreads];
  double acc = 0.0;
  for (long i = blockIdx.x * static_cast<long>(kThreads) + threadIdx.x; i < n;
       i += static_cast<long>(kBlocks) * kThreads)
    acc += static_cast<double>(x[i]) * x[i];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

}  // namespace

void AdamWUpdate(float* params, const float* grads, float* m, float* v, long n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long t) {
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(t));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(t));
  AdamWKernel<<<Blocks(n, 256), 256>>>(params, grads, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                       c1, c2);
  VIGIL_CUDA_LAUNCH();
}

void SgdUpdate(float* params, const float* grads, long n, float lr, float weight_decay) {
  SgdKernel<<<Blocks(n, 256), 256>>>(params, grads, n, lr, weight_decay);
  VIGIL_CUDA_LAUNCH();
}

double SumOfSquares(const float* x, long n) {
  static thread_local Scratch scratch;
  double* partial = static_cast<double*>(scratch.Get(sizeof(double) * kBlocks));
  SquaresKernel<<<kBlocks, kThreads>>>(partial, x, n);
  VIGIL_CUDA_LAUNCH();
  std::vector<double> host(kBlocks);
  VIGIL_CUDA(cudaMemcpy(host.data(), partial, sizeof(double) * kBlocks, cudaMemcpyDeviceToHost));
  double sum = 0.0;
  for (double p : host) sum += p;
  return sum;
}

void Scale(float* x, long n, float s) {
  if (s == 1.0f || n == 0) return;
  ScaleKernel<<<Blocks(n, 256), 256>>>(x, n, s);
  VIGIL_CUDA_LAUNCH();
}

float ClipGradNorm(float* grads, long n, float max_norm) {
  const double sq = SumOfSquares(grads, n);
  // The factor is the CPU kernel's: one definition of the clipping rule.
  Scale(grads, n, cpu::ClipScale(sq, max_norm));
  return static_cast<float>(std::sqrt(sq));
}

}  // namespace vigil::kernels::cuda
