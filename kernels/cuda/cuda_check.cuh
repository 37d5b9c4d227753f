// Error checks and the shared cuBLAS handle of the CUDA kernels. A failed
// CUDA or cuBLAS call is a programming or device error the kernels cannot
// recover from: it throws std::runtime_error naming the call and the place.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace vigil::kernels::cuda {

inline void Check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                             cudaGetErrorString(e));
  }
}

inline void Check(cublasStatus_t s, const char* what, const char* file, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what +
                             ": cuBLAS status " + std::to_string(static_cast<int>(s)));
  }
}

#define VIGIL_CUDA(call) ::vigil::kernels::cuda::Check((call), #call, __FILE__, __LINE__)
#define VIGIL_CUDA_LAUNCH() VIGIL_CUDA(cudaGetLastError())

// One cuBLAS handle per host thread, on the default stream.
cublasHandle_t CublasHandle();

// Device memory a kernel wrapper keeps between calls (one per host thread:
// declare it static thread_local), grown when a call needs more. Never freed:
// it lives as long as the thread that uses the kernels.
class Scratch {
 public:
  void* Get(size_t bytes) {
    if (bytes > capacity_) {
      if (ptr_) VIGIL_CUDA(cudaFree(ptr_));
      VIGIL_CUDA(cudaMalloc(&ptr_, bytes));
      capacity_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
};

inline int Blocks(long n, int threads) { return static_cast<int>((n + threads - 1) / threads); }

}  // namespace vigil::kernels::cuda
