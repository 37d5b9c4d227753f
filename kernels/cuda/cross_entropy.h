// CUDA twin of kernels/cpu/cross_entropy.h (same signature; logits, targets
// and dlogits on the device; the mean loss comes back to the host). Row
// losses are summed in row order in double: deterministic.
#pragma once

#include <cstdint>

namespace vigil::kernels::cuda {

float CrossEntropyForwardBackward(float* dlogits, const float* logits, const int32_t* targets,
                                  int N, int V);

}  // namespace vigil::kernels::cuda
