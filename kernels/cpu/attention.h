// Causal multi-head self-attention.
// inp: [B, T, 3C] holding q, k, v side by side; out: [B, T, C].
// att: [B, NH, T, T] softmax probabilities saved for the backward (entries
// above the diagonal are zero). Backward accumulates into dinp; datt is
// scratch of att's shape.
#pragma once

namespace vigil::kernels::cpu {

void AttentionForward(float* out, float* att, const float* inp, int B, int T, int C, int NH);
void AttentionBackward(float* dinp, float* datt, const float* dout, const float* inp,
                       const float* att, int B, int T, int C, int NH);

}  // namespace vigil::kernels::cpu
