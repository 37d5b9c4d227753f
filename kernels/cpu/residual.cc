#include "kernels/cpu/residual.h"

namespace vigil::kernels::cpu {

void ResidualForward(float* out, const float* a, const float* b, long N) {
#pragma omp parallel for schedule(static)
  for (long i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

}  // namespace vigil::kernels::cpu
