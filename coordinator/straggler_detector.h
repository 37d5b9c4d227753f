// Stragglers: each rank's compute time (its step time less the time in
// collectives, which the slowest rank sets for all) over the last
// detection.straggler_window steps. Once per window, on rank 0's report,
// each rank's median is compared with the lower median of all ranks'; a
// rank above straggler_factor x that baseline two windows running is a
// straggler, reported once until it recovers (two windows running at or
// below the factor): one window's dip, a moment of contention on the host,
// does not make the same slow rank a second detection.
//
// Reports only. Single-threaded.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>

#include "common/job_spec.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

class StragglerDetector {
 public:
  explicit StragglerDetector(const DetectionSpec& spec) : spec_(spec) {}
  void Reset();  // a generation launched
  // `rank` reported a step; a detection (of any rank) or none.
  std::optional<Detection> Observe(int rank, int64_t step, double compute_seconds,
                                   const std::set<int>& alive, int64_t now_us);

 private:
  const DetectionSpec& spec_;
  std::map<int, std::deque<double>> compute_seconds_;  // by rank
  struct Windows {
    int above = 0;  // windows running above the factor
    int calm = 0;   // windows running at or below it
    bool reported = false;
  };
  std::map<int, Windows> windows_;  // by rank
};

}  // namespace vigil::coordinator
