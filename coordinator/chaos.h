// Injected faults, parsed from `--chaos` specs. Each fires once:
//   kill-rank:RANK@STEP — when RANK first reports a step at or past STEP,
//     its agent delivers a real SIGKILL;
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
  std::string kind;  // "kill-rank" | "corrupt-checkpoint"
  int rank = 0;
  std::string how;  // corrupt-checkpoint: flip | truncate | remove-shard | garble-manifest
  int64_t step = 0;
  bool fired = false;
  std::string spec;  // as the user wrote it
};

// "kill-rank:RANK@STEP" or "corrupt-checkpoint:HOW@STEP"
Result<ChaosFault> ParseChaosFault(const std::string& spec);
// Damages the committed checkpoint `dir` the way `how` says (see above).
Status DamageCheckpoint(const std::string& dir, const std::string& how);

// Parses every spec and checks each names a rank inside a world of `world_size`.
Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 int world_size);

}  // namespace vigil::coordinator
