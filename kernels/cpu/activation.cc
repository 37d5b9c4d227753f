#include "kernels/cpu/activation.h"

#include <cmath>

namespace vigil::kernels::cpu {

namespace {
const float kGeluScale = std::sqrt(2.0f / static_cast<float>(M_PI));
}

void GeluForward(float* out, const float* inp, long N) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < N; ++i) {
    const float x = inp[i];
    out[i] = 0.5f * x * (1.0f + std::tanh(kGeluScale * (x + 0.044715f * x * x * x)));
  }
}

void GeluBackward(float* dinp, const float* inp, const float* dout, long N) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < N; ++i) {
    const float x = inp[i];
    const float u = kGeluScale * (x + 0.044715f * x * x * x);
    const float th = std::tanh(u);
    const float sech2 = 1.0f - th * th;
    const float grad =
        0.5f * (1.0f + th) + 0.5f * x * sech2 * kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] += grad * dout[i];
  }
}

void ReluForward(float* out, const float* inp, long N) {
  for (long i = 0; i < N; ++i) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void ReluBackward(float* dinp, const float* inp, const float* dout, long N) {
  for (long i = 0; i < N; ++i) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

}  // namespace vigil::kernels::cpu
