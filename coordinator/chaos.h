// Injected faults, parsed from `--chaos` specs. Each fires once, when the
// named rank first reports a step at or past the given one; the coordinator
// then has the rank's agent deliver a real SIGKILL.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::coordinator {

struct ChaosFault {
  std::string kind;  // "kill-rank"
  int rank = 0;
  int64_t step = 0;
  bool fired = false;
  std::string spec;  // as the user wrote it
};

// "kill-rank:RANK@STEP"
Result<ChaosFault> ParseChaosFault(const std::string& spec);
// Parses every spec and checks each names a rank inside a world of `world_size`.
Result<std::vector<ChaosFault>> ParseChaosFaults(const std::vector<std::string>& specs,
                                                 int world_size);

}  // namespace vigil::coordinator
