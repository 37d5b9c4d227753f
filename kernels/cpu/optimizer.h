// Parameter updates over flat buffers of n values.
// AdamW (decoupled weight decay, bias-corrected moments; t counts from 1)
// and plain SGD. Global-norm clipping returns the norm before clipping.
#pragma once

namespace vigil::kernels::cpu {

void AdamWUpdate(float* params, const float* grads, float* m, float* v, long n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long t);
void SgdUpdate(float* params, const float* grads, long n, float lr, float weight_decay);
// Scales grads so their L2 norm is at most max_norm (if max_norm > 0).
float ClipGradNorm(float* grads, long n, float max_norm);

}  // namespace vigil::kernels::cpu
