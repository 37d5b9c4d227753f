#include "coordinator/hang_detector.h"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "common/vocabulary.h"

namespace vigil::coordinator {

using nlohmann::json;

double Median(std::deque<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

void HangDetector::NewGeneration() {
  progress_.clear();
  probe_.reset();
}

void HangDetector::StartWatching(const std::set<int>& ranks, int64_t now_us) {
  for (int rank : ranks) progress_[rank].last_us = now_us;
}

void HangDetector::OnStep(int rank, int64_t step, int64_t now_us) {
  auto& p = progress_[rank];
  p.last_us = now_us;
  p.step = step;
  p.saving = false;
}

void HangDetector::OnStepTime(double seconds) {
  recent_step_seconds_.push_back(seconds);
  if (recent_step_seconds_.size() > 50) recent_step_seconds_.pop_front();
}

void HangDetector::OnSaving(int rank, int64_t now_us) {
  auto& p = progress_[rank];
  p.last_us = now_us;
  p.saving = true;
}

bool HangDetector::saving(int rank) const {
  const auto it = progress_.find(rank);
  return it != progress_.end() && it->second.saving;
}

double HangDetector::median_step_ms() const { return Median(recent_step_seconds_) * 1000.0; }

double HangDetector::timeout_ms() const {
  return std::max<double>(spec_.hang_floor_ms, spec_.hang_factor * median_step_ms());
}

bool HangDetector::Silent(const std::set<int>& alive, int64_t now_us) const {
  const double timeout = timeout_ms();
  for (int rank : alive) {
    const auto it = progress_.find(rank);
    if (it == progress_.end()) continue;
    const double limit = it->second.saving ? spec_.save_timeout_ms : timeout;
    if (static_cast<double>(now_us - it->second.last_us) / 1000.0 > limit) return true;
  }
  return false;
}

void HangDetector::BeginProbe(int64_t now_us) {
  probe_ = Probe{};
  probe_->detected_us = now_us;
  probe_->timeout_ms = timeout_ms();
  probe_->median_ms = median_step_ms();
}

void HangDetector::AddDiagnosis(int agent, const wire::Diagnosis& d) {
  if (!probe_) return;
  probe_->agents_answered.insert(agent);
  for (const auto& r : d.ranks()) probe_->ranks[static_cast<int>(r.rank())] = r;
}

Detection HangDetector::FinishProbe(const std::set<int>& alive, int64_t generation) {
  Probe probe = std::move(*probe_);
  probe_.reset();
  std::optional<int> suspect;
  std::string reason;
  for (const char* states : {"Tt", "D", "R"}) {
    for (const auto& [rank, diag] : probe.ranks) {
      if (!suspect && !diag.state().empty() &&
          std::string(states).find(diag.state()[0]) != std::string::npos) {
        suspect = rank;
        reason = "process state " + diag.state();
      }
    }
  }
  json ranks = json::object();
  int64_t lowest = INT64_MAX;
  for (int rank : alive) {
    const auto& p = progress_[rank];
    json j{{"last_step", p.step},
           {"silent_ms", static_cast<double>(probe.detected_us - p.last_us) / 1000.0},
           {"saving", p.saving}};
    if (probe.ranks.count(rank)) {
      const auto& diag = probe.ranks[rank];
      j["pid"] = diag.pid();
      j["state"] = diag.state();
      j["wchan"] = diag.wchan();
      j["cpu_ticks"] = diag.cpu_ticks();
      j["stack_file"] = diag.stack_file();
    }
    ranks[std::to_string(rank)] = j;
    if (!suspect && p.step < lowest) lowest = p.step;
  }
  if (!suspect && lowest != INT64_MAX) {
    int behind = 0;
    std::optional<int> only;
    for (int rank : alive) {
      if (progress_[rank].step == lowest) {
        ++behind;
        only = rank;
      }
    }
    if (behind == 1) {
      suspect = only;
      reason = "furthest behind (step " + std::to_string(lowest) + ")";
    }
  }
  Detection d;
  d.kind = kind::kRankHang;
  d.rank = suspect;
  d.time_us = probe.detected_us;
  d.detail = json{{"timeout_ms", probe.timeout_ms},
                  {"median_step_ms", probe.median_ms},
                  {"hang_factor", spec_.hang_factor},
                  {"hang_floor_ms", spec_.hang_floor_ms},
                  {"detected_at_us", probe.detected_us},
                  {"ranks", ranks},
                  {"suspect", suspect ? json(*suspect) : json(nullptr)},
                  {"suspect_reason", reason}};
  if (suspect && probe.ranks.count(*suspect))
    d.detail["stack_file"] = probe.ranks[*suspect].stack_file();
  char timeout[32];
  std::snprintf(timeout, sizeof(timeout), "%.0f", probe.timeout_ms);
  d.summary = "generation " + std::to_string(generation) + " made no progress for " + timeout +
              " ms; " +
              (suspect ? "rank " + std::to_string(*suspect) + " hangs (" + reason + ")"
                       : std::string("no single rank stands out"));
  return d;
}

}  // namespace vigil::coordinator
