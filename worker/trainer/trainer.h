// One rank's training loop, without the process around it: the model, the
// sharded optimizer, the data order, checkpoint save and resume. vigil-train
// wires it to vigild (store, agent reports, exit codes); tests run several
// in threads over real Gloo collectives.
//
// Restart-time changes (what OPT-175B's operators did by hand):
//   * the optimizer kind may differ from the checkpoint's. AdamW -> SGD
//     drops the moments; SGD -> AdamW starts them from zero with a fresh
//     bias-correction count. Moments are never taken from a checkpoint of
//     another optimizer, and the switch is reported in resume_notes().
//   * lr_scale multiplies the schedule's learning rate from the resumed
//     step on; it is recorded in every checkpoint's manifest, and a later
//     restart that names no scale keeps the checkpoint's (a crash must not
//     undo a deliberate change).
//   * the world size may differ from the checkpoint's (a reshard): each
//     rank reads the slices holding what it owns at the new size. The
//     global batch must stay the same (ConfigHash holds it), so the data
//     order is the same too.
// Changing the model, the data or the global batch is refused (ConfigHash).
//
// Written over a kernel set K (Trainer: CPU with Gloo; CudaTrainer in
// trainer_cuda.h: GPU with NCCL); checkpoints are the same either way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "checkpoint/checkpoint.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "worker/trainer/collectives.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/model.h"
#include "worker/trainer/sharded_optimizer.h"

namespace vigil::trainer {

struct TrainerOptions {
  std::string checkpoint_dir;
  checkpoint::Storage* storage = checkpoint::Storage::Default();
  std::string optimizer;  // empty: the spec's
  double lr_scale = 0.0;  // 0: the checkpoint's (1 for a fresh start)
};

struct StepStats {
  int64_t step = 0;  // steps completed after this one
  float loss = 0.0f, aux_loss = 0.0f, grad_norm = 0.0f, lr = 0.0f;
  int dropped_choices = 0;
};

template <class K>
class TrainerT {
 public:
  // Throws std::invalid_argument if the model cannot be placed on this world.
  TrainerT(const JobSpec& spec, const TrainerOptions& options, const DataSource& data,
           Collectives* coll, std::shared_ptr<spdlog::logger> log);

  // A fresh start from the spec's seed.
  void Initialize();
  // Loads a checkpoint, at any world size. Collective: every rank reads and
  // verifies its part, and all fail if any does. Corruption: it failed
  // verification (nothing of it is used); InvalidArgument: it belongs to
  // another model, data order or global batch.
  Status Resume(const std::string& dir);
  // One optimizer step. Collective.
  StepStats Step();
  // Writes this rank's shard; rank 0 commits. Collective. Returns the
  // committed directory on rank 0, "" on the others, or an error when any
  // rank's shard failed (the save is abandoned everywhere; training goes on).
  Result<std::string> Save();
  // A digest of every parameter of the model, experts on other ranks
  // included; the same on every rank. Collective.
  std::string ParamsDigest();

  int64_t step() const { return step_; }
  int64_t tokens_seen() const { return tokens_seen_; }
  bool done() const { return step_ >= spec_.schedule.steps; }
  const std::vector<std::string>& resume_notes() const { return notes_; }
  DecoderModelT<K>& model() { return model_; }
  const ShardedOptimizerT<K>& optimizer() const { return *opt_; }
  int64_t state_bytes() const;
  // Bytes one checkpoint of the whole job takes.
  int64_t checkpoint_bytes() const;
  // Where the job's state lies (checkpoint/layout.h).
  const checkpoint::StateLayout& state_layout() const { return state_layout_; }

 private:
  float LearningRate(int64_t step) const;
  Status ReadState(checkpoint::CheckpointReader* reader);
  checkpoint::Manifest ManifestHeader() const;

  const JobSpec& spec_;
  TrainerOptions options_;
  const DataSource& data_;
  Collectives* coll_;
  std::shared_ptr<spdlog::logger> log_;
  DecoderModelT<K> model_;
  std::unique_ptr<ShardedOptimizerT<K>> opt_;
  checkpoint::StateLayout state_layout_;
  std::vector<checkpoint::TensorInfo> tensors_;  // global, in offset order
  std::vector<int32_t> inputs_, targets_;
  std::vector<float> staging_;  // host copies of device state (checkpoints, digests)
  int64_t step_ = 0, tokens_seen_ = 0;
  std::vector<std::string> notes_;
  bool inherit_lr_scale_ = false;  // no scale was named: take the checkpoint's
};

using Trainer = TrainerT<kernels::CpuKernels>;
extern template class TrainerT<kernels::CpuKernels>;

// The model configuration a job spec describes.
ModelConfig ModelConfigFor(const JobSpec& spec);
// Whether a spec's experts are sharded over `world` ranks.
bool UsesExpertParallelism(const JobSpec& spec, int world);

}  // namespace vigil::trainer
