// out[i] = a[i] + b[i] over N values (out may be a or b): the residual
// connections of a transformer block.
#pragma once

namespace vigil::kernels::cpu {

void ResidualForward(float* out, const float* a, const float* b, long N);

}  // namespace vigil::kernels::cpu
