// CUDA twin of kernels/cpu/matmul.h, same signature, device pointers:
// out[M,N] = inp[M,K] · weight[N,K]^T + bias[N]; backward accumulates into
// dinp, dweight and dbias (dbias may be null). FP32 storage, BF16 tensor-core
// arithmetic with FP32 accumulation (CUBLAS_COMPUTE_32F_FAST_16BF): the
// master weights stay FP32. Deterministic: cuBLAS gives the same bits run
// after run on one GPU model, and the bias sums run per column in row order.
#pragma once

namespace vigil::kernels::cuda {

void MatmulForward(float* out, const float* inp, const float* weight, const float* bias, int M,
                   int K, int N);
void MatmulBackward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, int M, int K, int N);

}  // namespace vigil::kernels::cuda
