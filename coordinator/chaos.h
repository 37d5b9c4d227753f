// Injected faults, parsed from `--chaos` specs (or sent to a running job by
// `vigil chaos`). Each fires once, when the rank it names (rank 0 for
// checkpoints) first reports a step at or past STEP (at once without @STEP):
//   kill-rank:RANK[@STEP] — its agent delivers a real SIGKILL;
//   hang-rank:RANK[@STEP] — SIGSTOP: the rank stops, alive, and its peers
//     block in their next collective (a hang);
//   nan:RANK[@STEP] — SIGUSR1: vigil-train poisons its next gradient with a
//     NaN, which the real all-reduce carries to every rank;
//   spike:RANK[@STEP] — SIGUSR2: vigil-train scrambles its next batch's
//     targets, a real loss (and gradient) spike;
//   corrupt-checkpoint:HOW@STEP — when rank 0 first reports a step at or
//     past STEP, vigild damages the newest committed checkpoint on disk:
//     flip (one byte of a shard: only the ranks' checksums can tell),
//     truncate (a shard cut in half), remove-shard, garble-manifest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::coordinator {

struct ChaosFault {
  std::string kind;  // kill-rank | hang-rank | nan | spike | corrupt-checkpoint
  int rank = 0;
  std::string how;   // corrupt-checkpoint: flip | truncate | remove-shard | garble-manifest
  int64_t step = 0;  // 0: at the next report
  bool fired = false;
  std::string spec;  // as the user wrote it
};

Result<ChaosFault> ParseChaosFault(const std::string& spec);
// The signal a rank fault delivers (0 for kinds that are not rank faults).
int ChaosSignal(const std::string& kind);
// Damages the committed checkpoint `dir` the way `how` says (see above).
Status DamageCheckpoint(const std::string& dir, const std::string& how);

// Parses every spec and checks each names a rank inside a world of `world_size`.
Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 int world_size);

}  // namespace vigil::coordinator
