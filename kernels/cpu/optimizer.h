// Parameter updates over flat buffers of n values.
// AdamW (decoupled weight decay, bias-corrected moments; t counts from 1)
// and plain SGD. Global-norm clipping returns the norm before clipping.
#pragma once

namespace vigil::kernels::cpu {

void AdamWUpdate(float* params, const float* grads, float* m, float* v, long n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long t);
void SgdUpdate(float* params, const float* grads, long n, float lr, float weight_decay);

// Global-norm clipping in pieces, for gradients spread over ranks: each rank
// sums the squares of its part, the parts are added in rank order, and every
// rank scales its part by the same factor.
double SumOfSquares(const float* x, long n);
// The factor that brings a norm of sqrt(sum_of_squares) down to max_norm
// (1 if it is already within, or if max_norm <= 0).
float ClipScale(double sum_of_squares, float max_norm);
void Scale(float* x, long n, float s);
// All three on one buffer; returns the norm before clipping.
float ClipGradNorm(float* grads, long n, float max_norm);

}  // namespace vigil::kernels::cpu
