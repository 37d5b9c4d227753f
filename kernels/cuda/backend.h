// The CUDA kernel set as one type (the twin of kernels/cpu/backend.h):
// buffers are DeviceVector, copies are cudaMemcpy on the default stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/activation.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/device_vector.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/layernorm.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/optimizer.h"
#include "kernels/cuda/residual.h"
#include "kernels/cuda/top2_gating.h"

namespace vigil::kernels {

struct CudaKernels {
  static constexpr const char* kName = "cuda";
  template <typename T>
  using Vector = cuda::DeviceVector<T>;

  template <typename T>
  static void Zero(T* p, size_t n) {
    Check(cudaMemset(p, 0, n * sizeof(T)), "cudaMemset");
  }
  template <typename T>
  static void Copy(T* dst, const T* src, size_t n) {
    Check(cudaMemcpy(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice), "cudaMemcpy D2D");
  }
  template <typename T>
  static void FromHost(T* dst, const T* host, size_t n) {
    Check(cudaMemcpy(dst, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  template <typename T>
  static void ToHost(T* host, const T* src, size_t n) {
    Check(cudaMemcpy(host, src, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  }
  // Host values copied into `buf` (resized as needed); returns the device copy.
  template <typename T>
  static const T* Stage(Vector<T>& buf, const T* host, size_t n) {
    if (buf.size() != n) buf.assign(n, T{});
    FromHost(buf.data(), host, n);
    return buf.data();
  }

  static constexpr auto MatmulForward = &cuda::MatmulForward;
  static constexpr auto MatmulBackward = &cuda::MatmulBackward;
  static constexpr auto LayerNormForward = &cuda::LayerNormForward;
  static constexpr auto LayerNormBackward = &cuda::LayerNormBackward;
  static constexpr auto AttentionForward = &cuda::AttentionForward;
  static constexpr auto AttentionBackward = &cuda::AttentionBackward;
  static constexpr auto GeluForward = &cuda::GeluForward;
  static constexpr auto GeluBackward = &cuda::GeluBackward;
  static constexpr auto ReluForward = &cuda::ReluForward;
  static constexpr auto ReluBackward = &cuda::ReluBackward;
  static constexpr auto EmbeddingForward = &cuda::EmbeddingForward;
  static constexpr auto EmbeddingBackward = &cuda::EmbeddingBackward;
  static constexpr auto CrossEntropyForwardBackward = &cuda::CrossEntropyForwardBackward;
  static constexpr auto ResidualForward = &cuda::ResidualForward;
  static constexpr auto Top2GatingForward = &cuda::Top2GatingForward;
  static constexpr auto Top2GatingBackward = &cuda::Top2GatingBackward;
  static constexpr auto MoeDispatchForward = &cuda::MoeDispatchForward;
  static constexpr auto MoeDispatchBackward = &cuda::MoeDispatchBackward;
  static constexpr auto MoeCombineForward = &cuda::MoeCombineForward;
  static constexpr auto MoeCombineBackward = &cuda::MoeCombineBackward;
  static constexpr auto AdamWUpdate = &cuda::AdamWUpdate;
  static constexpr auto SgdUpdate = &cuda::SgdUpdate;
  static constexpr auto SumOfSquares = &cuda::SumOfSquares;
  static constexpr auto Scale = &cuda::Scale;

 private:
  static void Check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
};

}  // namespace vigil::kernels
