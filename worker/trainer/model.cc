#include "worker/trainer/model_impl.h"

namespace vigil::trainer {

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template class DecoderModelT<kernels::CpuKernels>;

}  // namespace vigil::trainer
