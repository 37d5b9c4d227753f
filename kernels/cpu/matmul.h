// out[M,N] = inp[M,K] · weight[N,K]^T + bias[N]   (weights stored row-major,
// one row per output feature, as in PyTorch's nn.Linear).
// Backward accumulates (+=) into dinp, dweight and dbias; dbias may be null.
// Single-threaded sgemm calls: results are bit-identical run after run.
#pragma once

namespace vigil::kernels::cpu {

void MatmulForward(float* out, const float* inp, const float* weight, const float* bias, int M,
                   int K, int N);
void MatmulBackward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, int M, int K, int N);

}  // namespace vigil::kernels::cpu
