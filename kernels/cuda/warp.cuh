// Warp- and block-level reductions in a fixed butterfly order: deterministic.
#pragma once

namespace vigil::kernels::cuda {

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <class Op>
__device__ inline float WarpReduce(float v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Over the whole block (blockDim.x a multiple of 32, at most 1024); every
// thread gets the result. `identity` fills the lanes past the last warp.
template <class Op>
__device__ inline float BlockReduce(float v, float identity, Op op) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpReduce(v, op);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : identity;
  return WarpReduce(v, op);
}

__device__ inline float WarpSum(float v) { return WarpReduce(v, AddOp{}); }
__device__ inline float BlockSum(float v) { return BlockReduce(v, 0.0f, AddOp{}); }
__device__ inline float BlockMax(float v) { return BlockReduce(v, -INFINITY, MaxOp{}); }

}  // namespace vigil::kernels::cuda
