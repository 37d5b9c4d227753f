#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/warp.cuh"

namespace vigil::kernels::cuda {
namespace {

constexpr int kThreads = 128;

// Block (b, h, t): scores against keys 0..t, softmax, out = att · v.
__global__ void AttentionForwardKernel(float* out, float* att, const float* inp, int T, int C,
                                       int NH) {
  const int t = blockIdx.x % T, h = (blockIdx.x / T) % NH, b = blockIdx.x / (T * NH);
  const int C3 = 3 * C, hs = C / NH;
  const float scale = rsqrtf(static_cast<float>(hs));
  const float* q = inp + (static_cast<long>(b) * T + t) * C3 + h * hs;
  float* a = att + ((static_cast<long>(b) * NH + h) * T + t) * T;
  float local_max = -INFINITY;
  for (int t2 = threadIdx.x; t2 < T; t2 += blockDim.x) {
    if (t2 > t) {
      a[t2] = 0.0f;
      continue;
    }
    const float* k = inp + (static_cast<long>(b) * T + t2) * C3 + C + h * hs;
    float dot = 0.0f;
    for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
    a[t2] = dot * scale;
    local_max = fmaxf(local_max, a[t2]);
  }
  const float maxv = BlockMax(local_max);
  float local_sum = 0.0f;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    a[t2] = expf(a[t2] - maxv);
    local_sum += a[t2];
  }
  const float inv = 1.0f / BlockSum(local_sum);
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) a[t2] *= inv;
  __syncthreads();
  float* o = out + (static_cast<long>(b) * T + t) * C + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; ++t2)
      sum += a[t2] * inp[(static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs + i];
    o[i] = sum;
  }
}

// Block (b, h, t) as a query: datt[t, :] = dout[t] · v, the softmax backward
// (datt then holds d(pre-softmax scores) * scale), and dq[t].
__global__ void AttentionBackwardQuery(float* dinp, float* datt, const float* dout,
                                       const float* inp, const float* att, int T, int C, int NH) {
  const int t = blockIdx.x % T, h = (blockIdx.x / T) % NH, b = blockIdx.x / (T * NH);
  const int C3 = 3 * C, hs = C / NH;
  const float scale = rsqrtf(static_cast<float>(hs));
  const float* a = att + ((static_cast<long>(b) * NH + h) * T + t) * T;
  float* da = datt + ((static_cast<long>(b) * NH + h) * T + t) * T;
  const float* dy = dout + (static_cast<long>(b) * T + t) * C + h * hs;
  float local = 0.0f;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) {
    const float* v = inp + (static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs;
    float d = 0.0f;
    for (int i = 0; i < hs; ++i) d += v[i] * dy[i];
    da[t2] = d;
    local += a[t2] * d;
  }
  const float dot = BlockSum(local);
  for (int t2 = threadIdx.x; t2 < T; t2 += blockDim.x)
    da[t2] = t2 <= t ? a[t2] * (da[t2] - dot) * scale : 0.0f;
  __syncthreads();
  float* dq = dinp + (static_cast<long>(b) * T + t) * C3 + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; ++t2)
      sum += inp[(static_cast<long>(b) * T + t2) * C3 + C + h * hs + i] * da[t2];
    dq[i] += sum;
  }
}

// Block (b, h, t2) as a key: dk[t2] and dv[t2], summed over queries t >= t2 in order.
__global__ void AttentionBackwardKey(float* dinp, const float* datt, const float* dout,
                                     const float* inp, const float* att, int T, int C, int NH) {
  const int t2 = blockIdx.x % T, h = (blockIdx.x / T) % NH, b = blockIdx.x / (T * NH);
  const int C3 = 3 * C, hs = C / NH;
  const long base = (static_cast<long>(b) * NH + h) * T;
  float* dk = dinp + (static_cast<long>(b) * T + t2) * C3 + C + h * hs;
  float* dv = dinp + (static_cast<long>(b) * T + t2) * C3 + 2 * C + h * hs;
  for (int i = threadIdx.x; i < hs; i += blockDim.x) {
    float sk = 0.0f, sv = 0.0f;
    for (int t = t2; t < T; ++t) {
      const long row = (base + t) * T + t2;
      sk += inp[(static_cast<long>(b) * T + t) * C3 + h * hs + i] * datt[row];
      sv += att[row] * dout[(static_cast<long>(b) * T + t) * C + h * hs + i];
    }
    dk[i] += sk;
    dv[i] += sv;
  }
}

}  // namespace

void AttentionForward(float* out, float* att, const float* inp, int B, int T, int C, int NH) {
  AttentionForwardKernel<<<B * NH * T, kThreads>>>(out, att, inp, T, C, NH);
  VIGIL_CUDA_LAUNCH();
}

void AttentionBackward(float* dinp, float* datt, const float* dout, const float* inp,
                       const float* att, int B, int T, int C, int NH) {
  AttentionBackwardQuery<<<B * NH * T, kThreads>>>(dinp, datt, dout, inp, att, T, C, NH);
  VIGIL_CUDA_LAUNCH();
  AttentionBackwardKey<<<B * NH * T, kThreads>>>(dinp, datt, dout, inp, att, T, C, NH);
  VIGIL_CUDA_LAUNCH();
}

}  // namespace vigil::kernels::cuda
