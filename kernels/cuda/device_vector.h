// A typed, owning device allocation with the few vector operations the
// model needs (assign to zeros, data, size). Host code only (cuda_runtime
// API), so g++-compiled code can hold device buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

namespace vigil::kernels::cuda {

template <typename T>
class DeviceVector {
 public:
  DeviceVector() = default;
  ~DeviceVector() { Release(); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  DeviceVector(DeviceVector&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceVector& operator=(DeviceVector&& o) noexcept {
    Release();
    ptr_ = std::exchange(o.ptr_, nullptr);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  // n elements, all zero bits (the only fill value the model uses).
  void assign(size_t n, T zero) {
    if (zero != T{}) throw std::invalid_argument("DeviceVector::assign fills with zeros only");
    if (n != size_) {
      Release();
      if (n > 0) Check(cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)), "cudaMalloc");
      size_ = n;
    }
    if (n > 0) Check(cudaMemset(ptr_, 0, n * sizeof(T)), "cudaMemset");
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return size_; }

 private:
  static void Check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
  void Release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  T* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vigil::kernels::cuda
