#include "worker/trainer/sharded_optimizer_impl.h"

namespace vigil::trainer {

template class ShardedOptimizerT<kernels::CpuKernels>;

}  // namespace vigil::trainer
