// Token plus learned position embedding: out[b,t,:] = wte[tokens[b,t]] + wpe[t].
// Backward accumulates into dwte and dwpe.
#pragma once

#include <cstdint>

namespace vigil::kernels::cpu {

void EmbeddingForward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B,
                      int T, int C);
void EmbeddingBackward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B,
                       int T, int C);

}  // namespace vigil::kernels::cpu
