// LayerNorm over the last dimension C of N rows: out = (x - mean) * rstd * w + b.
// Forward saves mean and rstd (N each) for the backward, which accumulates
// into dinp, dweight and dbias.
#pragma once

namespace vigil::kernels::cpu {

void LayerNormForward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                      const float* bias, int N, int C);
void LayerNormBackward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, const float* mean, const float* rstd,
                       int N, int C);

}  // namespace vigil::kernels::cpu
