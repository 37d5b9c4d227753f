// CUDA twin of kernels/cpu/residual.h (same signature, device pointers).
#pragma once

namespace vigil::kernels::cuda {

void ResidualForward(float* out, const float* a, const float* b, long N);

}  // namespace vigil::kernels::cuda
