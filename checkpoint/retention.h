// Which checkpoints retention deletes: all but the newest `keep_last`, the
// archive (every step that is a multiple of `keep_every`, when it is not
// 0: LLM360 keeps hundreds of intermediate checkpoints for analysis), and
// the protected ones (the checkpoint being restored, the newest verified).
// A pure function, so the rule is tested on its own; vigild applies it,
// deletes, and records every deletion in the logbook.
#pragma once

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

namespace vigil::checkpoint {

// `steps`: the live (committed, not corrupt) checkpoints. Returns the steps
// to delete, oldest first.
inline std::vector<int64_t> RetentionVictims(std::vector<int64_t> steps, int keep_last,
                                             int keep_every, const std::set<int64_t>& protect) {
  std::sort(steps.rbegin(), steps.rend());
  steps.erase(std::unique(steps.begin(), steps.end()), steps.end());
  std::vector<int64_t> out;
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t s = steps[i];
    const bool recent = static_cast<int>(i) < std::max(keep_last, 1);
    const bool archived = keep_every > 0 && s % keep_every == 0;
    if (!recent && !archived && !protect.count(s)) out.push_back(s);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace vigil::checkpoint
