// The job spec: what to train, on how many ranks, how to checkpoint and how
// far to go. Parsed from YAML with every error naming file, line, column and
// the dotted field path ("tiny.yaml:7:12: model.d_model: expected a positive
// integer, got 'abc'"). Unknown fields are errors too: a typo must not
// silently fall back to a default for two months.
#pragma once

#include <algorithm>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace vigil {

// GLaM-style mixture of experts: the MLP of every `every`-th block (the
// second, fourth, ... for every: 2) becomes `experts` expert MLPs behind a
// top-2 gate. Off when experts is 0.
struct MoeSpec {
  int experts = 0;
  int every = 2;
  double capacity_factor = 1.25;  // expert capacity = ceil(factor * 2 * tokens / experts)
  double aux_loss_weight = 0.01;  // load-balancing loss added to the cross-entropy
  // auto: expert parallel when the world divides the experts, else replicated.
  std::string placement = "auto";  // auto | expert_parallel | replicated
};

struct ModelSpec {
  std::string kind = "decoder";  // OPT-style decoder-only transformer
  int vocab = 256;  // byte-level token files need 256; the synthetic source uses <= 64 symbols
  int d_model = 64;
  int layers = 2;
  int heads = 4;
  int seq_len = 32;
  std::string activation = "gelu";  // gelu (GPT-2) | relu (OPT)
  double init_std = 0.02;
  MoeSpec moe;
  // Training FLOPs per token (forward and backward, 3x the forward): every
  // matrix multiply (attention projections, MLPs or the two experts a token
  // is routed to and its router, the tied output projection) plus causal
  // attention's scores and weighted sums, counted over the full context as
  // PaLM's MFU does. LayerNorms, activations and the optimizer are left out.
  double TrainingFlopsPerToken() const;
};

struct DataSpec {
  std::string kind = "synthetic";  // synthetic: seeded Markov byte source; file: a token file
  std::string path;                // kind file: made by `vigil data prepare`; resolved to absolute
  uint64_t seed = 1234;            // seeds the data order (and the synthetic source, and init)
};

struct OptimizerSpec {
  std::string kind = "adamw";  // adamw | sgd
  double lr = 3e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // global-norm clip; 0 disables
  // ZeRO: each rank keeps the moments of, and updates, only its slice of the
  // replicated parameters (reduce-scatter gradients, all-gather parameters).
  bool zero = true;
};

struct ScheduleSpec {
  int steps = 200;
  int batch_per_rank = 8;  // sequences per rank per step
  int warmup_steps = 10;   // linear warmup, then constant
};

// world.hosts and world.spares, each (vigild is measured at 10,000 agents:
// bench/coordinator_load).
inline constexpr int kMaxHosts = 16384;  // (the messages of job_spec.cc say it too)

struct WorldSpec {
  int hosts = 2;
  int ranks_per_host = 2;
  std::string device = "cpu";
  // Hosts beyond `hosts` that register and wait: a playbook's use_spare
  // puts one in the place of a lost or cordoned host.
  int spares = 0;
  // A world shrunk by shrink_world grows back when spares are free again,
  // at its next checkpoint.
  bool regrow = true;
  // Dense peak FLOP/s of one rank's device in the training precision, in
  // TFLOP/s, for model FLOPs utilisation (vigil_model_flops_utilization_ratio);
  // 0: not known, no MFU is exported.
  double peak_tflops_per_rank = 0;
  int world_size() const { return hosts * ranks_per_host; }
};

struct CheckpointSpec {
  std::string dir;  // empty: <workdir>/checkpoints
  int every_steps = 20;
  // Retention: the newest keep_last checkpoints, plus every one whose step
  // is a multiple of keep_every (0: no archive), are kept; vigild deletes
  // the rest, never the one being restored nor the newest verified one.
  int keep_last = 3;
  int keep_every = 0;
  // A recovery skips at most this many corrupt checkpoints (newest first)
  // before the job pauses for a person.
  int max_fallbacks = 3;
  // How long choosing the checkpoint to resume from may take (the
  // candidates' manifests and shard sizes read, off the event loop); past
  // it the job pauses for a person (a hung file system).
  int choose_timeout_ms = 60000;
  // Saves run in a background writer while training goes on (at most one
  // in flight); false writes them inline.
  bool async = true;
};

// Every wait in the system has one of these named, configurable bounds.
struct LimitsSpec {
  int max_restarts = 10;
  int heartbeat_interval_ms = 500;
  int heartbeat_timeout_ms = 5000;
  int rendezvous_timeout_ms = 30000;
  // From launching a generation to its first step; past it the generation
  // is declared failed (start_timeout) and handled like any failure.
  int start_timeout_ms = 60000;
  int collective_timeout_ms = 30000;
  int kill_grace_ms = 3000;
  // From ordering a generation's teardown to every agent confirming it; an
  // agent that does not may still hold the GPUs, so the job pauses for a
  // person rather than launch beside it. 0: kill_grace_ms + 5000 (the
  // grace, then time for the KILL to be reaped and confirmed).
  int teardown_timeout_ms = 0;
  int TeardownTimeoutMs() const {
    return teardown_timeout_ms > 0 ? teardown_timeout_ms : kill_grace_ms + 5000;
  }
  // vigild's last orders (shutdown) are flushed this long before it exits.
  int shutdown_flush_ms = 300;
  // A rank that fails in a collective is usually a symptom of another rank
  // or host dying; vigild waits this long for the cause before acting on it.
  int failure_settle_ms = 1000;
  int agent_wait_ms = 30000;  // how long vigild waits for all agents to register
  // An agent told to shut down TERMs its ranks, KILLs them after
  // kill_grace_ms, then waits this long for them to be reaped before it exits.
  int agent_exit_wait_ms = 2000;
  // An agent that lost vigild keeps its ranks training this long while it
  // reconnects (to the vigild that restarts); past it, it tears them down.
  int coordinator_grace_ms = 900000;
  // `vigil run` starts a vigild that died again, at most this many times.
  int coordinator_restarts = 10;
  // `vigil run` kills a vigild that has not answered its status for this
  // long (stopped or wedged), and so starts another (which adopts the
  // agents' ranks; the dead one never wakes to act on its stale view).
  // 0: max(heartbeat_timeout_ms, 3000); negative: never.
  int coordinator_watchdog_ms = 0;
  int CoordinatorWatchdogMs() const {
    return coordinator_watchdog_ms != 0 ? coordinator_watchdog_ms
                                        : std::max(heartbeat_timeout_ms, 3000);
  }
};

// How vigild tells a hung rank and a numerical anomaly from
// normal variation. Every threshold is relative to what this job has done
// recently, with floors so that a tiny job's millisecond steps do not
// trigger on scheduling noise.
struct DetectionSpec {
  // No step from a rank for max(hang_factor x the median recent step time,
  // hang_floor_ms) is a hang. A rank in a blocking checkpoint save gets
  // save_timeout_ms instead.
  double hang_factor = 3.0;
  int hang_floor_ms = 2000;
  int save_timeout_ms = 600000;
  // How long the agents have to say what each rank of a hung generation
  // does (process state, stacks); the hang is declared with what came.
  int hang_probe_ms = 1000;
  // gdb's time to dump one hung rank's stacks; the teardown waits for the dumps.
  int stack_dump_timeout_ms = 8000;
  // A loss (grad norm) above spike_factor x its running median over the last
  // spike_window steps, once spike_window steps are seen in a generation.
  double loss_spike_factor = 1.5;
  double grad_norm_spike_factor = 10.0;
  int spike_window = 20;
  // A straggler: a rank whose median compute time (its step time less its
  // time in collectives) over the last straggler_window steps is above
  // straggler_factor x the median rank's, in two windows running.
  double straggler_factor = 2.0;
  int straggler_window = 20;
};

// Where `launcher: slurm` puts the job, and what vigild does to Slurm's nodes.
struct SlurmSpec {
  std::string partition;   // sbatch --partition (empty: the cluster's default)
  std::string time_limit;  // sbatch --time (empty: the partition's limit)
  bool exclusive = true;   // sbatch --exclusive: the nodes are the job's alone
  // GPUs each node's agent step gets (sbatch --gpus-per-node, srun
  // --gres=gpu:N); -1: world.ranks_per_host for device cuda, else none.
  int gpus_per_node = -1;
  int GpusPerNode(const std::string& device, int ranks_per_host) const {
    if (gpus_per_node >= 0) return gpus_per_node;
    return device == "cuda" ? ranks_per_host : 0;
  }
  // A host the playbook cordons is drained in Slurm (scontrol update
  // NodeName=... State=DRAIN), so that no later job is given it either...
  bool drain = true;
  // ...once the cordon is this old, and vigild has not been stopped
  // meanwhile: `scancel` signals every step at once, and the ranks and
  // agents it kills can reach vigild as failures before vigild's own stop.
  int drain_delay_ms = 2000;
  int drain_timeout_ms = 10000;  // how long one scontrol may take
  // How long sbatch, squeue, scancel and scontrol may take in `vigil run`.
  int command_timeout_ms = 30000;
  // How often the submitting `vigil run` asks squeue whether the job is over.
  int queue_poll_ms = 10000;
};

// How vigild guards its RPC port (docs/processes.md, "Who may connect"):
// a connection proves the job's token in a bounded handshake or is closed,
// and nothing one connection does can grow vigild's memory without bound.
struct SecuritySpec {
  // A connection that has not proved the token this long after it was
  // accepted is closed (it never said Hello, or stopped mid-frame).
  int handshake_timeout_ms = 2000;
  // Connections still in their handshake; one accepted past the cap evicts
  // the oldest of them (a flood of idle connections cannot shut the
  // job's own processes out: they finish theirs in a round trip).
  int max_handshakes = 1024;
  // Authenticated connections in all. 0: every host and spare with its
  // agent and ranks, and room for CLIs and reconnections (MaxConnections()).
  int max_connections = 0;
  // A CLI (control) connection that sends no request this long after its
  // handshake is closed.
  int control_idle_ms = 30000;
  // Bytes queued for one connection that it does not read: past this, it
  // is dropped as a reader too slow.
  int64_t max_queued_output_bytes = int64_t{64} << 20;
  // /api/v1/* always needs `Authorization: Bearer <token>`; /metrics needs
  // it only when this is set (Prometheus's scrape config then carries the
  // token: `authorization: {credentials_file: WORKDIR/token}`).
  bool metrics_token = false;
  int MaxConnections(const WorldSpec& world) const;
};

struct JobSpec {
  std::string name;
  std::string source;              // file it came from (for messages)
  std::string launcher = "local";  // local | slurm (docs/slurm.md)
  SlurmSpec slurm;
  ModelSpec model;
  DataSpec data;
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
  WorldSpec world;
  CheckpointSpec checkpoint;
  LimitsSpec limits;
  DetectionSpec detection;
  SecuritySpec security;
  // The playbook vigild follows (absolute; relative paths in the YAML are to
  // the job file). Empty: the built-in default (playbooks/default.yaml).
  std::string playbook;

  // Sequences per optimizer step over the whole world.
  int64_t global_batch() const {
    return static_cast<int64_t>(schedule.batch_per_rank) * world.world_size();
  }
  // A hash of what a checkpoint's state is only meaningful under: the model's
  // shape, the data and its order (source, seed, global batch). A resume
  // with a different hash is refused. The world size is left out (a
  // checkpoint reshards; the global batch fixes the data order), and so are
  // the optimizer, learning rate and step count: changing them at a restart
  // is an operator's (or a playbook's) right, as OPT-175B's logbook shows.
  std::string ConfigHash() const;
  // The same configuration as JSON, recorded in every checkpoint's manifest.
  std::string ConfigJson() const;
};

Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& source_name);
Result<JobSpec> LoadJobSpec(const std::string& path);

}  // namespace vigil
