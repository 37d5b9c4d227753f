// CUDA twin of kernels/cpu/attention.h (same signature, device pointers):
// causal multi-head attention over inp [B, T, 3C] (q, k, v), saving the
// probabilities att [B, NH, T, T] for the backward. One block per query row
// computes scores, softmax and the weighted sum of values in one kernel. The
// backward runs one kernel over query rows (datt, dq) and one over key rows
// (dk, dv), each summing in a fixed order: deterministic, no atomics.
// This is the straightforward form; a flash-style kernel that never
// materialises att is the next step for speed.
#pragma once

namespace vigil::kernels::cuda {

void AttentionForward(float* out, float* att, const float* inp, int B, int T, int C, int NH);
void AttentionBackward(float* dinp, float* datt, const float* dout, const float* inp,
                       const float* att, int B, int T, int C, int NH);

}  // namespace vigil::kernels::cuda
