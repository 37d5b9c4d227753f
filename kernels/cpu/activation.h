// Elementwise activations over N values: GELU (tanh approximation, GPT-2)
// and ReLU (OPT). Backward accumulates into dinp.
#pragma once

namespace vigil::kernels::cpu {

void GeluForward(float* out, const float* inp, long N);
void GeluBackward(float* dinp, const float* inp, const float* dout, long N);
void ReluForward(float* out, const float* inp, long N);
void ReluBackward(float* dinp, const float* inp, const float* dout, long N);

}  // namespace vigil::kernels::cpu
