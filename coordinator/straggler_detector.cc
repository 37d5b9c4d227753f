#include "coordinator/straggler_detector.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/vocabulary.h"
#include "coordinator/hang_detector.h"

namespace vigil::coordinator {

using nlohmann::json;

void StragglerDetector::Reset() {
  compute_seconds_.clear();
  windows_.clear();
}

std::optional<Detection> StragglerDetector::Observe(int rank, int64_t step, double compute_seconds,
                                                    const std::set<int>& alive, int64_t now_us) {
  if (compute_seconds <= 0) return std::nullopt;  // a backend that cannot tell
  const size_t window = static_cast<size_t>(spec_.straggler_window);
  auto& mine = compute_seconds_[rank];
  mine.push_back(compute_seconds);
  while (mine.size() > window) mine.pop_front();
  if (rank != 0 || step % static_cast<int64_t>(window) != 0 || alive.size() < 2)
    return std::nullopt;
  std::map<int, double> medians;
  std::vector<double> all;
  for (int r : alive) {
    const auto& w = compute_seconds_[r];
    if (w.size() < window) return std::nullopt;
    medians[r] = Median(w);
    all.push_back(medians[r]);
  }
  // The lower median: with two ranks, the faster one is the baseline.
  std::sort(all.begin(), all.end());
  const double baseline = all[(all.size() - 1) / 2];
  for (const auto& [r, median] : medians) {
    Windows& w = windows_[r];
    if (median > spec_.straggler_factor * baseline) {
      ++w.above;
      w.calm = 0;
    } else {
      w.above = 0;
      if (++w.calm >= 2) w.reported = false;  // recovered
    }
    if (w.above < 2 || w.reported) continue;  // two windows running, reported once
    w.reported = true;
    Detection d;
    d.kind = kind::kStraggler;
    d.rank = r;
    d.time_us = now_us;
    d.detail = json{{"compute_median_ms", median * 1000.0}, {"peer_median_ms", baseline * 1000.0},
                    {"factor", median / baseline},          {"threshold", spec_.straggler_factor},
                    {"window", spec_.straggler_window},     {"step", step}};
    char what[160];
    std::snprintf(what, sizeof(what),
                  "rank %d computes %.1f ms a step, %.1fx the median rank's %.1f ms, over the "
                  "last %d steps twice running",
                  r, median * 1000.0, median / baseline, baseline * 1000.0, spec_.straggler_window);
    d.summary = what;
    return d;
  }
  return std::nullopt;
}

}  // namespace vigil::coordinator
