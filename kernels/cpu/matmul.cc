#include "kernels/cpu/matmul.h"

#include <cblas.h>

namespace vigil::kernels::cpu {

void MatmulForward(float* out, const float* inp, const float* weight, const float* bias, int M,
                   int K, int N) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; ++m) {
    float* row = out + static_cast<long>(m) * N;
    for (int n = 0; n < N; ++n) row[n] = bias ? bias[n] : 0.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, weight, K, 1.0f, out,
              N);
}

void MatmulBackward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, int M, int K, int N) {
  // dinp[M,K] += dout[M,N] · weight[N,K]
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, weight, K, 1.0f,
              dinp, K);
  // dweight[N,K] += dout^T[N,M] · inp[M,K]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f,
              dweight, K);
  if (dbias) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; ++n) {
      float sum = 0.0f;
      for (int m = 0; m < M; ++m) sum += dout[static_cast<long>(m) * N + n];
      dbias[n] += sum;
    }
  }
}

}  // namespace vigil::kernels::cpu
