// CUDA twin of kernels/cpu/activation.h (same signature, device pointers):
// GELU (tanh approximation) and ReLU; backward accumulates into dinp.
#pragma once

namespace vigil::kernels::cuda {

void GeluForward(float* out, const float* inp, long N);
void GeluBackward(float* dinp, const float* inp, const float* dout, long N);
void ReluForward(float* out, const float* inp, long N);
void ReluBackward(float* dinp, const float* inp, const float* dout, long N);

}  // namespace vigil::kernels::cuda
