#include "kernels/cpu/activation.h"

#include "kernels/shared_math.h"

namespace vigil::kernels::cpu {

void GeluForward(float* out, const float* inp, long N) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < N; ++i) {
    out[i] = Gelu(inp[i]);
  }
}

void GeluBackward(float* dinp, const float* inp, const float* dout, long N) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < N; ++i) {
    dinp[i] += GeluGrad(inp[i]) * dout[i];
  }
}

void ReluForward(float* out, const float* inp, long N) {
  for (long i = 0; i < N; ++i) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void ReluBackward(float* dinp, const float* inp, const float* dout, long N) {
  for (long i = 0; i < N; ++i) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

}  // namespace vigil::kernels::cpu
