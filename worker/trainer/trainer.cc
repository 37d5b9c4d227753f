#include "worker/trainer/trainer_impl.h"

#include "checkpoint/layout.h"

namespace vigil::trainer {

ModelConfig ModelConfigFor(const JobSpec& spec) {
  ModelConfig c;
  c.vocab = spec.model.vocab;
  c.max_seq = spec.model.seq_len;
  c.d_model = spec.model.d_model;
  c.layers = spec.model.layers;
  c.heads = spec.model.heads;
  c.relu = spec.model.activation == "relu";
  c.experts = spec.model.moe.experts;
  c.moe_every = spec.model.moe.every;
  c.capacity_factor = spec.model.moe.capacity_factor;
  c.aux_loss_weight = static_cast<float>(spec.model.moe.aux_loss_weight);
  return c;
}

bool UsesExpertParallelism(const JobSpec& spec, int world) {
  const auto& moe = spec.model.moe;
  return checkpoint::ExpertsShardedAt(moe.experts, moe.placement, spec.world.device, world);
}

template class TrainerT<kernels::CpuKernels>;

}  // namespace vigil::trainer
