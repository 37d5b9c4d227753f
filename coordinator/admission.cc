#include "coordinator/admission.h"

namespace vigil::coordinator {

Admission::Admission(const SecuritySpec& security, const WorldSpec& world)
    : handshake_timeout_us_(int64_t{security.handshake_timeout_ms} * 1000),
      control_idle_us_(int64_t{security.control_idle_ms} * 1000),
      min_evictable_us_(handshake_timeout_us_ / 4),
      max_handshakes_(static_cast<size_t>(security.max_handshakes)),
      max_connections_(security.MaxConnections(world)) {}

std::vector<uint64_t> Admission::Accepted(uint64_t id, int64_t now_us) {
  std::vector<uint64_t> evicted;
  while (!handshaking_.empty() && handshaking_.size() >= max_handshakes_ &&
         now_us - handshaking_.begin()->second >= min_evictable_us_) {
    evicted.push_back(handshaking_.begin()->first);
    handshaking_.erase(handshaking_.begin());
  }
  handshaking_[id] = now_us;
  return evicted;
}

std::optional<int64_t> Admission::AcceptPausedUntil(int64_t now_us) const {
  if (handshaking_.size() < max_handshakes_) return std::nullopt;
  const int64_t evictable_at = handshaking_.begin()->second + min_evictable_us_;
  if (evictable_at <= now_us) return std::nullopt;
  return evictable_at;
}

Status Admission::Authenticated(uint64_t id, bool control, int64_t now_us) {
  if (authenticated_.size() >= static_cast<size_t>(max_connections_)) {
    return Status::FailedPrecondition("vigild holds security.max_connections (" +
                                      std::to_string(max_connections_) +
                                      ") authenticated connections already");
  }
  handshaking_.erase(id);
  authenticated_.insert(id);
  if (control) idle_controls_[id] = now_us;
  return Status::Ok();
}

void Admission::Served(uint64_t id) { idle_controls_.erase(id); }

void Admission::Closed(uint64_t id) {
  handshaking_.erase(id);
  authenticated_.erase(id);
  idle_controls_.erase(id);
}

std::vector<std::pair<uint64_t, std::string>> Admission::Expired(int64_t now_us) const {
  std::vector<std::pair<uint64_t, std::string>> out;
  // Ids grow with accept time: the oldest handshakes come first.
  for (const auto& [id, since] : handshaking_) {
    if (now_us - since < handshake_timeout_us_) break;
    out.emplace_back(id, auth_reason::kTimeout);
  }
  for (const auto& [id, since] : idle_controls_) {
    if (now_us - since >= control_idle_us_) out.emplace_back(id, "idle");
  }
  return out;
}

std::optional<AuthFailureLog::Row> AuthFailureLog::Failed(const std::string& source,
                                                          const std::string& reason,
                                                          int64_t now_us) {
  std::string key = source;
  if (!sources_.count(key) && sources_.size() >= kMaxSources) key = kOtherSources;
  auto [it, fresh] = sources_.try_emplace(key);
  Window& w = it->second;
  if (fresh) {
    // The first failure of its window is recorded at once.
    w.started_us = now_us;
    Row row;
    row.source = key;
    row.count = 1;
    row.reasons[reason] = 1;
    row.first_us = row.last_us = now_us;
    return row;
  }
  Row& p = w.pending;
  if (p.count == 0) {
    p.source = key;
    p.first_us = now_us;
  }
  ++p.count;
  ++p.reasons[reason];
  p.last_us = now_us;
  return std::nullopt;
}

std::vector<AuthFailureLog::Row> AuthFailureLog::Flush(int64_t now_us) {
  std::vector<Row> rows;
  for (auto it = sources_.begin(); it != sources_.end();) {
    Window& w = it->second;
    if (now_us - w.started_us < window_us_) {
      ++it;
      continue;
    }
    if (w.pending.count == 0) {
      it = sources_.erase(it);  // a whole window without a failure
      continue;
    }
    rows.push_back(std::move(w.pending));
    w.pending = Row{};
    w.started_us = now_us;  // the row just given opens the next window
    ++it;
  }
  return rows;
}

}  // namespace vigil::coordinator
