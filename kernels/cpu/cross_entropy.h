// Fused softmax + cross-entropy over N rows of V logits.
// Returns the mean loss over the N rows; writes dlogits = (softmax - onehot) / N
// when dlogits is non-null (the gradient of the mean loss).
#pragma once

#include <cstdint>

namespace vigil::kernels::cpu {

float CrossEntropyForwardBackward(float* dlogits, const float* logits, const int32_t* targets,
                                  int N, int V);

}  // namespace vigil::kernels::cpu
