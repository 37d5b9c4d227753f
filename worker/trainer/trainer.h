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

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "checkpoint/async_writer.h"
#include "checkpoint/checkpoint.h"
#include "common/job_spec.h"
#include "common/status.h"
#include "common/util.h"
#include "worker/trainer/collectives.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/model.h"
#include "worker/trainer/sharded_optimizer.h"

namespace vigil::trainer {

struct TrainerOptions {
  std::string checkpoint_dir;
  checkpoint::Storage* storage = checkpoint::Storage::Default();
  // Saves write their shard in a background thread (checkpoint/async_writer.h).
  bool async_save = false;
  std::string optimizer;  // empty: the spec's
  double lr_scale = 0.0;  // 0: the checkpoint's (1 for a fresh start)
  // Skip this many batches of data when step() reaches skip_at_step (a
  // playbook stepping over the data around a numerical anomaly). The data
  // cursor is part of the checkpoint, so the skip stays skipped.
  int64_t skip_batches = 0;
  int64_t skip_at_step = 0;
};

// How a checkpoint ended, on one rank.
struct SaveOutcome {
  int64_t step = 0;
  Status status;    // ok: committed
  std::string dir;  // the committed directory (rank 0)
  // From the snapshot of the state to when this rank learned the outcome
  // (an async save's is seen at the first step boundary after it).
  double seconds = 0.0;
  // Whether this rank tells vigild: rank 0 of a commit (or of its failure),
  // any rank whose own shard failed (with its own reason).
  bool report = false;
};

struct StepStats {
  int64_t step = 0;  // steps completed after this one
  float loss = 0.0f, aux_loss = 0.0f, grad_norm = 0.0f, lr = 0.0f;
  int dropped_choices = 0;
  // The gradient norm (or the loss) is NaN or Inf. The update was not
  // applied (every rank sees the same norm), the state and step() are as
  // before, and the caller stops: resuming needs a decision (skip the data,
  // roll back, lower the learning rate).
  bool nonfinite = false;
};

// Faults injected on purpose (chaos), each into the next Step() of one rank.
enum class InjectedFault {
  kNanGradient,  // one element of this rank's gradient becomes NaN before the all-reduce
  kBadBatch,     // this rank's targets are scrambled: a real loss spike
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
  // Checkpoints, in two halves so that the writing overlaps training:
  //   BeginSave() starts saving the state as it is now (step(), the
  //   parameters, the moments). Asynchronous, it returns at once; the next
  //   Step() waits for the snapshot just before the optimizer changes the
  //   state. Otherwise the shard is written before it returns. Requires no
  //   save in flight (FinishSave(true) first: that is the back-pressure).
  //   FinishSave(wait) is collective, called by every rank at the same
  //   points (once per step is enough): when every rank's shard is written
  //   (waiting for it with `wait`), the ranks exchange their checksums and
  //   rank 0 commits. Returns the outcome then, nullopt before. A failed
  //   shard abandons the save everywhere (its directory is removed);
  //   training goes on.
  void BeginSave();
  std::optional<SaveOutcome> FinishSave(bool wait);
  bool save_in_flight() const { return pending_save_.has_value(); }
  // Seconds the training thread has spent blocked on checkpoints: starting
  // saves, waiting for snapshots and shards, exchanging checksums, committing.
  double save_stall_seconds() const { return save_stall_seconds_; }
  // BeginSave() then FinishSave(true): the committed directory on rank 0, ""
  // on the others, or the error.
  Result<std::string> Save();
  // A digest of every parameter of the model, experts on other ranks
  // included; the same on every rank. Collective.
  std::string ParamsDigest();
  void Inject(InjectedFault fault) { injected_.push_back(fault); }

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
  std::optional<SaveOutcome> CollectCommit(bool wait);

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
  std::vector<float> staging_;  // host copies of device state (loads, digests)
  // A save in flight: what the manifest will say, the plan and (once
  // written) this rank's checksums.
  struct PendingSave {
    checkpoint::Manifest header;
    std::string tmp_dir;
    std::optional<Result<std::vector<uint64_t>>> sums;
    bool committing = false;  // rank 0: the commit runs on the writer thread
    std::chrono::steady_clock::time_point began;
  };
  std::optional<PendingSave> pending_save_;
  std::unique_ptr<checkpoint::AsyncShardWriter> writer_;
  std::vector<float> save_staging_;  // host copy of device state being saved
  double save_stall_seconds_ = 0.0;
  int64_t step_ = 0, tokens_seen_ = 0;
  int64_t data_batch_ = 0;  // the global batch the next step trains on (>= step_ after skips)
  std::vector<InjectedFault> injected_;
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
