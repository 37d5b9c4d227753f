// The trainer on a GPU: TrainerT over the CUDA kernel set, with NCCL
// collectives (nccl_collectives.h). One GPU per rank.
#pragma once

#include "kernels/cuda/backend.h"
#include "worker/trainer/trainer.h"

namespace vigil::trainer {

using CudaTrainer = TrainerT<kernels::CudaKernels>;
extern template class TrainerT<kernels::CudaKernels>;

}  // namespace vigil::trainer
