// CUDA twin of kernels/cpu/top2_gating.h (same signatures and routing rules,
// device pointers; capacity as from cpu::Top2Capacity). Per-token work runs
// one thread per token; slot assignment, which must visit first choices in
// token order before second choices, runs in one thread, as does the aux
// sum: both are O(N * E), small beside the experts' matmuls.
#pragma once

#include <cstdint>

namespace vigil::kernels::cuda {

float Top2GatingForward(float* probs, int32_t* expert, int32_t* slot, float* gate,
                        const float* logits, int N, int E, int capacity);
void Top2GatingBackward(float* dlogits, const float* dgate, const float* probs,
                        const int32_t* expert, int N, int E, float aux_weight);
void MoeDispatchForward(float* dispatched, const float* x, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E);
void MoeDispatchBackward(float* dx, const float* ddispatched, const int32_t* expert,
                         const int32_t* slot, int N, int C, int capacity);
void MoeCombineForward(float* out, const float* expert_out, const float* gate,
                       const int32_t* expert, const int32_t* slot, int N, int C, int capacity);
void MoeCombineBackward(float* dexpert_out, float* dgate, const float* dout,
                        const float* expert_out, const float* gate, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E);

}  // namespace vigil::kernels::cuda
