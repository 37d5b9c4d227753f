#include "kernels/cpu/embedding.h"

namespace vigil::kernels::cpu {

void EmbeddingForward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                      int T, int C) {
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      float* o = out + (static_cast<long>(b) * T + t) * C;
      const float* te = wte + static_cast<long>(tokens[b * T + t]) * C;
      const float* pe = wpe + static_cast<long>(t) * C;
      for (int c = 0; c < C; ++c) o[c] = te[c] + pe[c];
    }
  }
}

void EmbeddingBackward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                       int T, int C) {
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      const float* d = dout + (static_cast<long>(b) * T + t) * C;
      float* dte = dwte + static_cast<long>(tokens[b * T + t]) * C;
      float* dpe = dwpe + static_cast<long>(t) * C;
      for (int c = 0; c < C; ++c) {
        dte[c] += d[c];
        dpe[c] += d[c];
      }
    }
  }
}

}  // namespace vigil::kernels::cpu
