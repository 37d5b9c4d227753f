// CUDA twin of kernels/cpu/optimizer.h (same signatures, device buffers):
// AdamW and SGD updates on FP32 master weights, and global-norm clipping in
// pieces. SumOfSquares reduces over a fixed grid and adds the block partials
// on the host in order: the same bits run after run.
#pragma once

namespace vigil::kernels::cuda {

void AdamWUpdate(float* params, const float* grads, float* m, float* v, long n, float lr,
                 float beta1, float beta2, float eps, float weight_decay, long t);
void SgdUpdate(float* params, const float* grads, long n, float lr, float weight_decay);
double SumOfSquares(const float* x, long n);
void Scale(float* x, long n, float s);
float ClipGradNorm(float* grads, long n, float max_norm);

}  // namespace vigil::kernels::cuda
