// GShard/GLaM top-2 gating over N tokens and E experts, with the dispatch of
// tokens into fixed-capacity expert buffers and the weighted combine of the
// experts' outputs.
//
// Routing. probs = softmax(logits). Each token picks its two most probable
// experts (ties go to the lower index). Every expert has `capacity` slots:
// first the tokens' first choices take slots in token order, then their
// second choices do, so a first choice never loses its slot to a second
// one. A choice that finds its expert full is dropped; a token with both
// choices dropped contributes nothing and travels on the residual path.
// Combine weights are the two probabilities renormalised to sum to one
// (GShard); a dropped choice keeps its weight slot but adds nothing.
//
// Load balancing (GShard / Switch): aux = E * sum_e f_e * P_e, where f_e is
// the fraction of tokens whose first choice is e (before capacity drops) and
// P_e the mean router probability of e over the tokens. It is 1 for a
// perfectly uniform router and E for total collapse; the gradient flows
// through P_e only (f_e counts are not differentiable).
//
// Expert buffers are expert-major: slot s of expert e is row e * capacity + s.
#pragma once

#include <cstdint>

namespace vigil::kernels::cpu {

// Expert capacity for N tokens with top-2 routing: ceil(factor * 2 * N / E), at least 1.
int Top2Capacity(int N, int E, double capacity_factor);

// Writes probs[N,E], expert[N,2], slot[N,2] (-1: dropped), gate[N,2];
// returns aux.
float Top2GatingForward(float* probs, int32_t* expert, int32_t* slot, float* gate,
                        const float* logits, int N, int E, int capacity);
// dlogits[N,E] (overwritten) from dgate[N,2] (the loss gradient w.r.t. the
// combine weights) plus aux_weight times the gradient of aux.
void Top2GatingBackward(float* dlogits, const float* dgate, const float* probs,
                        const int32_t* expert, int N, int E, float aux_weight);

// dispatched[E * capacity, C] (overwritten): token rows copied to their slots, empty slots zero.
void MoeDispatchForward(float* dispatched, const float* x, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E);
// dx[N,C] += the rows of ddispatched at each token's kept slots.
void MoeDispatchBackward(float* dx, const float* ddispatched, const int32_t* expert,
                         const int32_t* slot, int N, int C, int capacity);

// out[N,C] (overwritten) = sum over kept choices k of gate[n,k] * expert_out[row(n,k)].
void MoeCombineForward(float* out, const float* expert_out, const float* gate,
                       const int32_t* expert, const int32_t* slot, int N, int C, int capacity);
// dexpert_out[E * capacity, C] and dgate[N,2] are overwritten.
void MoeCombineBackward(float* dexpert_out, float* dgate, const float* dout,
                        const float* expert_out, const float* gate, const int32_t* expert,
                        const int32_t* slot, int N, int C, int capacity, int E);

}  // namespace vigil::kernels::cpu
