// CUDA twin of kernels/cpu/embedding.h (same signature, device pointers).
// The backward is deterministic without atomics: token rows are grouped on
// the host (tokens are copied back, B*T ints) and each row of dwte sums its
// positions in order.
#pragma once

#include <cstdint>

namespace vigil::kernels::cuda {

void EmbeddingForward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                      int T, int C);
void EmbeddingBackward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                       int T, int C);

}  // namespace vigil::kernels::cuda
