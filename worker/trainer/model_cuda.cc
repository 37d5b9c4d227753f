// The model over the CUDA kernels: parameters, gradients and activations on
// the GPU (see model.h). Compiled by the host compiler: the kernels are
// launched by their host wrappers.
#include "worker/trainer/model_cuda.h"

#include "kernels/cuda/backend.h"
#include "worker/trainer/model_impl.h"

namespace vigil::trainer {

template class MoeBlockT<kernels::CudaKernels>;
template class DecoderModelT<kernels::CudaKernels>;

}  // namespace vigil::trainer
