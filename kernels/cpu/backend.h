// The CPU kernel set as one type, for code written once over kernel sets
// (the model is a template over CpuKernels and CudaKernels, see
// kernels/cuda/backend.h). Buffers are std::vector; "device" memory is host
// memory, so staging is free.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/layernorm.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/optimizer.h"
#include "kernels/cpu/residual.h"
#include "kernels/cpu/top2_gating.h"

namespace vigil::kernels {

struct CpuKernels {
  static constexpr const char* kName = "cpu";
  template <typename T>
  using Vector = std::vector<T>;

  template <typename T>
  static void Zero(T* p, size_t n) {
    std::fill(p, p + n, T{});
  }
  template <typename T>
  static void Copy(T* dst, const T* src, size_t n) {
    std::memcpy(dst, src, n * sizeof(T));
  }
  // Host values into a buffer of this kernel set, and back.
  template <typename T>
  static void FromHost(T* dst, const T* host, size_t n) {
    Copy(dst, host, n);
  }
  template <typename T>
  static void ToHost(T* host, const T* src, size_t n) {
    Copy(host, src, n);
  }
  // A pointer the kernels can read host values through: here, the values themselves.
  template <typename T>
  static const T* Stage(Vector<T>&, const T* host, size_t) {
    return host;
  }

  static constexpr auto MatmulForward = &cpu::MatmulForward;
  static constexpr auto MatmulBackward = &cpu::MatmulBackward;
  static constexpr auto LayerNormForward = &cpu::LayerNormForward;
  static constexpr auto LayerNormBackward = &cpu::LayerNormBackward;
  static constexpr auto AttentionForward = &cpu::AttentionForward;
  static constexpr auto AttentionBackward = &cpu::AttentionBackward;
  static constexpr auto GeluForward = &cpu::GeluForward;
  static constexpr auto GeluBackward = &cpu::GeluBackward;
  static constexpr auto ReluForward = &cpu::ReluForward;
  static constexpr auto ReluBackward = &cpu::ReluBackward;
  static constexpr auto EmbeddingForward = &cpu::EmbeddingForward;
  static constexpr auto EmbeddingBackward = &cpu::EmbeddingBackward;
  static constexpr auto CrossEntropyForwardBackward = &cpu::CrossEntropyForwardBackward;
  static constexpr auto ResidualForward = &cpu::ResidualForward;
  static constexpr auto Top2GatingForward = &cpu::Top2GatingForward;
  static constexpr auto Top2GatingBackward = &cpu::Top2GatingBackward;
  static constexpr auto MoeDispatchForward = &cpu::MoeDispatchForward;
  static constexpr auto MoeDispatchBackward = &cpu::MoeDispatchBackward;
  static constexpr auto MoeCombineForward = &cpu::MoeCombineForward;
  static constexpr auto MoeCombineBackward = &cpu::MoeCombineBackward;
  static constexpr auto AdamWUpdate = &cpu::AdamWUpdate;
  static constexpr auto SgdUpdate = &cpu::SgdUpdate;
  static constexpr auto SumOfSquares = &cpu::SumOfSquares;
  static constexpr auto Scale = &cpu::Scale;
};

}  // namespace vigil::kernels
