#include "kernels/cpu/attention.h"

#include <cmath>
#include <cstring>

namespace vigil::kernels::cpu {

void AttentionForward(float* out, float* att, const float* inp, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < T; ++t) {
        const float* q = inp + (static_cast<long>(b) * T + t) * C3 + h * hs;
        float* a = att + ((static_cast<long>(b) * NH + h) * T + t) * T;
        float maxv = -INFINITY;
        for (int t2 = 0; t2 <= t; ++t2) {
          const float* k = inp + (static_cast<long>(b) * T + t2) * C3 + C + h * hs;
          float dot = 0.0f;
          for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
          dot *= scale;
          a[t2] = dot;
          if (dot > maxv) maxv = dot;
        }
        float sum = 0.0f;
        for (int t2 = 0; t2 <= t; ++t2) {
          a[t2] = std::exp(a[t2] - maxv);
          sum += a[t2];
        }
        const float inv = 1.0f / sum;
        for (int t2 = 0; t2 < T; ++t2) a[t2] = t2 <= t ? a[t2] * inv : 0.0f;
        float* o = out + (static_cast<long>(b) * T + t) * C + h * hs;
        std::memset(o, 0, sizeof(float) * hs);
        for (int t2 = 0; t2 <= t; ++t2) {
          const float* v = inp + (static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs;
          for (int i = 0; i < hs; ++i) o[i] += a[t2] * v[i];
        }
      }
    }
  }
}

void AttentionBackward(float* dinp, float* datt, const float* dout, const float* inp,
                       const float* att, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  // Each (b, h) pair touches only its own slices of dinp: parallel and deterministic.
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < NH; ++h) {
      for (int t = 0; t < T; ++t) {
        const float* a = att + ((static_cast<long>(b) * NH + h) * T + t) * T;
        float* da = datt + ((static_cast<long>(b) * NH + h) * T + t) * T;
        const float* dout_t = dout + (static_cast<long>(b) * T + t) * C + h * hs;
        // out = sum_t2 a[t2] v[t2]
        for (int t2 = 0; t2 <= t; ++t2) {
          const float* v = inp + (static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs;
          float* dv = dinp + (static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs;
          float d = 0.0f;
          for (int i = 0; i < hs; ++i) {
            d += v[i] * dout_t[i];
            dv[i] += a[t2] * dout_t[i];
          }
          da[t2] = d;
        }
        // softmax backward: dpre = a * (da - sum(a * da))
        float dot = 0.0f;
        for (int t2 = 0; t2 <= t; ++t2) dot += a[t2] * da[t2];
        const float* q = inp + (static_cast<long>(b) * T + t) * C3 + h * hs;
        float* dq = dinp + (static_cast<long>(b) * T + t) * C3 + h * hs;
        for (int t2 = 0; t2 <= t; ++t2) {
          const float dpre = a[t2] * (da[t2] - dot) * scale;
          const float* k = inp + (static_cast<long>(b) * T + t2) * C3 + C + h * hs;
          float* dk = dinp + (static_cast<long>(b) * T + t2) * C3 + C + h * hs;
          for (int i = 0; i < hs; ++i) {
            dq[i] += k[i] * dpre;
            dk[i] += q[i] * dpre;
          }
        }
      }
    }
  }
}

}  // namespace vigil::kernels::cpu
