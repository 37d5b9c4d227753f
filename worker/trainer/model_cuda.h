// The decoder on a GPU: DecoderModelT over the CUDA kernel set.
#pragma once

#include "kernels/cuda/backend.h"
#include "worker/trainer/model.h"

namespace vigil::trainer {

using CudaDecoderModel = DecoderModelT<kernels::CudaKernels>;
extern template class DecoderModelT<kernels::CudaKernels>;

}  // namespace vigil::trainer
