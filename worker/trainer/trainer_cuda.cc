#include "worker/trainer/trainer_cuda.h"

#include "worker/trainer/model_cuda.h"
#include "worker/trainer/sharded_optimizer_impl.h"
#include "worker/trainer/trainer_impl.h"

namespace vigil::trainer {

template class ShardedOptimizerT<kernels::CudaKernels>;
template class TrainerT<kernels::CudaKernels>;

}  // namespace vigil::trainer
