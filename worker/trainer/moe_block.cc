#include "worker/trainer/moe_block_impl.h"

namespace vigil::trainer {

template class MoeBlockT<kernels::CpuKernels>;

}  // namespace vigil::trainer
