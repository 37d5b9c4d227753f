#include "kernels/cuda/cuda_check.cuh"
#include "kernels/cuda/device.h"

namespace vigil::kernels::cuda {

bool DeviceAvailable(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    if (why) *why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
    cudaGetLastError();  // clear the sticky error for later calls
    return false;
  }
  return true;
}

cublasHandle_t CublasHandle() {
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    VIGIL_CUDA(cublasCreate(&h));
    return h;
  }();
  return handle;
}

}  // namespace vigil::kernels::cuda
