// CUDA twin of kernels/cpu/layernorm.h (same signature, device pointers).
// One warp per row; dweight and dbias are summed per column in row order, so
// results are the same run after run.
#pragma once

namespace vigil::kernels::cuda {

void LayerNormForward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                      const float* bias, int N, int C);
void LayerNormBackward(float* dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, const float* mean, const float* rstd,
                       int N, int C);

}  // namespace vigil::kernels::cuda
