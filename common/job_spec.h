// The job spec: what to train, on how many ranks, how to checkpoint and how
// far to go. Parsed from YAML with every error naming file, line, column and
// the dotted field path ("tiny.yaml:7:12: model.d_model: expected a positive
// integer, got 'abc'"). Unknown fields are errors too: a typo must not
// silently fall back to a default for two months.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace vigil {

struct ModelSpec {
  std::string kind = "decoder";  // OPT-style decoder-only transformer
  int vocab = 256;               // byte-level tokens
  int d_model = 64;
  int layers = 2;
  int heads = 4;
  int seq_len = 32;
  std::string activation = "gelu";  // gelu (GPT-2) | relu (OPT)
  double init_std = 0.02;
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
};

struct ScheduleSpec {
  int steps = 200;
  int batch_per_rank = 8;  // sequences per rank per step
  int warmup_steps = 10;   // linear warmup, then constant
};

struct WorldSpec {
  int hosts = 2;
  int ranks_per_host = 2;
  std::string device = "cpu";
  int world_size() const { return hosts * ranks_per_host; }
};

struct CheckpointSpec {
  std::string dir;  // empty: <workdir>/checkpoints
  int every_steps = 20;
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
  // A rank that fails in a collective is usually a symptom of another rank
  // or host dying; vigild waits this long for the cause before acting on it.
  int failure_settle_ms = 1000;
  int agent_wait_ms = 30000;  // how long vigild waits for all agents to register
};

struct JobSpec {
  std::string name;
  std::string source;  // file it came from (for messages)
  std::string launcher = "local";
  ModelSpec model;
  DataSpec data;
  OptimizerSpec optimizer;
  ScheduleSpec schedule;
  WorldSpec world;
  CheckpointSpec checkpoint;
  LimitsSpec limits;

  // A hash of everything that decides the trained parameters (model, data,
  // optimizer, schedule, world size). A checkpoint records it, and a resume
  // with a different hash is refused.
  std::string ConfigHash() const;
};

Result<JobSpec> ParseJobSpec(const std::string& yaml_text, const std::string& source_name);
Result<JobSpec> LoadJobSpec(const std::string& path);

}  // namespace vigil
