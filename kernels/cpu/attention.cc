#include "kernels/cpu/attention.h"

#include <cblas.h>

#include <cmath>

namespace vigil::kernels::cpu {

// Per (batch, head), attention is five small matrix products, which run at
// sgemm speed on strided views of qkv (row stride 3C), and a row-wise
// softmax. The scores are computed for the full T x T square and the upper
// triangle masked: twice the useful multiply-adds, still far faster than
// scalar dot products. (b, h) pairs run one after another so sgemm has the
// machine; the softmax rows split across threads, one row per thread, so
// results do not depend on the thread count.

void AttentionForward(float* out, float* att, const float* inp, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const float* q = inp + static_cast<long>(b) * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = att + (static_cast<long>(b) * NH + h) * T * T;
      // scores[T, T] = scale * q[T, hs] · k[T, hs]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, 0.0f, a,
                  T);
#pragma omp parallel for schedule(static)
      for (int t = 0; t < T; ++t) {
        float* row = a + static_cast<long>(t) * T;
        float maxv = row[0];
        for (int t2 = 1; t2 <= t; ++t2) maxv = row[t2] > maxv ? row[t2] : maxv;
        float sum = 0.0f;
        for (int t2 = 0; t2 <= t; ++t2) {
          row[t2] = std::exp(row[t2] - maxv);
          sum += row[t2];
        }
        const float inv = 1.0f / sum;
        for (int t2 = 0; t2 <= t; ++t2) row[t2] *= inv;
        for (int t2 = t + 1; t2 < T; ++t2) row[t2] = 0.0f;
      }
      // out[T, hs] = att[T, T] · v[T, hs]
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, v, C3, 0.0f,
                  out + static_cast<long>(b) * T * C + h * hs, C);
    }
  }
}

void AttentionBackward(float* dinp, float* datt, const float* dout, const float* inp,
                       const float* att, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      const float* q = inp + static_cast<long>(b) * T * C3 + h * hs;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dinp + static_cast<long>(b) * T * C3 + h * hs;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* dy = dout + static_cast<long>(b) * T * C + h * hs;
      const float* a = att + (static_cast<long>(b) * NH + h) * T * T;
      float* da = datt + (static_cast<long>(b) * NH + h) * T * T;
      // dv[T, hs] += att^T · dout;  datt[T, T] = dout · v^T
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, dy, C, 1.0f, dv,
                  C3);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, C, v, C3, 0.0f, da,
                  T);
      // Softmax backward, scaled: da = att * (da - sum(att * da)) * scale; zero above the diagonal.
#pragma omp parallel for schedule(static)
      for (int t = 0; t < T; ++t) {
        const float* arow = a + static_cast<long>(t) * T;
        float* drow = da + static_cast<long>(t) * T;
        float dot = 0.0f;
        for (int t2 = 0; t2 <= t; ++t2) dot += arow[t2] * drow[t2];
        for (int t2 = 0; t2 <= t; ++t2) drow[t2] = arow[t2] * (drow[t2] - dot) * scale;
        for (int t2 = t + 1; t2 < T; ++t2) drow[t2] = 0.0f;
      }
      // dq += da · k;  dk += da^T · q
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, da, T, k, C3, 1.0f, dq,
                  C3);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, da, T, q, C3, 1.0f, dk,
                  C3);
    }
  }
}

}  // namespace vigil::kernels::cpu
