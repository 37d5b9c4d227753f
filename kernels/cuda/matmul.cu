#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/matmul.h"

namespace vigil::kernels::cuda {
namespace {

__global__ void BroadcastBias(float* out, const float* bias, int M, int N) {
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (i < static_cast<long>(M) * N) out[i] = bias ? bias[i % N] : 0.0f;
}

__global__ void BiasGrad(float* dbias, const float* dout, int M, int N) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  float sum = 0.0f;
  for (int m = 0; m < M; ++m) sum += dout[static_cast<long>(m) * N + n];
  dbias[n] += sum;
}

// Row-major X[r, c] is column-major X^T: every call below is the column-major
// form of the row-major product in its comment.
void Gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* a, int lda,
          const float* b, int ldb, float* c, int ldc, float beta) {
  const float alpha = 1.0f;
  VIGIL_CUDA(cublasGemmEx(CublasHandle(), ta, tb, m, n, k, &alpha, a, CUDA_R_32F, lda, b,
                          CUDA_R_32F, ldb, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                          CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void MatmulForward(float* out, const float* inp, const float* weight, const float* bias, int M,
                   int K, int N) {
  BroadcastBias<<<Blocks(static_cast<long>(M) * N, 256), 256>>>(out, bias, M, N);
  VIGIL_CUDA_LAUNCH();
  // out[M,N] += inp[M,K] · weight[N,K]^T
  Gemm(CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, weight, K, inp, K, out, N, 1.0f);
}

void MatmulBackward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, int M, int K, int N) {
  // dinp[M,K] += dout[M,N] · weight[N,K]
  Gemm(CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, weight, K, dout, N, dinp, K, 1.0f);
  // dweight[N,K] += dout[M,N]^T · inp[M,K]
  Gemm(CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, inp, K, dout, N, dweight, K, 1.0f);
  if (dbias) {
    BiasGrad<<<Blocks(N, 128), 128>>>(dbias, dout, M, N);
    VIGIL_CUDA_LAUNCH();
  }
}

}  // namespace vigil::kernels::cuda
