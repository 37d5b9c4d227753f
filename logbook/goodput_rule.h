// The goodput rule, once, for both places that count it: vigild's live
// vigil_goodput_ratio (coordinator/goodput.h) and `vigil logbook stats`
// (Logbook::Stats, from the file).
//
// A generation's training is productive from its first step up to the
// checkpoint the next generation resumed from, when this generation wrote
// that checkpoint (what came after it was computed again); if the next one
// resumed from a checkpoint this one did not write (an older one, or none),
// none of its training counts. The newest generation counts up to its end,
// or up to now while it trains. Rendezvous, checkpoint loads and the time
// between generations never count. Goodput is productive time over wall time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

namespace vigil {

// The productive seconds of one generation. `to_us`: when it ended (or now);
// `superseded`: a later generation started; `kept_us`: when the checkpoint
// that later generation resumed from was committed, if this one wrote it.
inline double ProductiveSeconds(std::optional<int64_t> first_step_us, int64_t to_us,
                                bool superseded, std::optional<int64_t> kept_us) {
  if (!first_step_us) return 0.0;
  int64_t useful_to = to_us;
  if (superseded) useful_to = kept_us ? std::min(*kept_us, to_us) : *first_step_us;
  return static_cast<double>(std::max<int64_t>(0, useful_to - *first_step_us)) / 1e6;
}

inline double GoodputRatio(double productive_seconds, double wall_seconds) {
  return wall_seconds > 0 ? std::min(1.0, productive_seconds / wall_seconds) : 0.0;
}

}  // namespace vigil
