// Who may hold a connection to vigild's RPC port, and for how long: the
// bounds of job_spec.h's SecuritySpec, as logic over connection ids and
// times (the Coordinator closes what these say to close). A connection is
// first handshaking: it has handshake_timeout_ms to prove the job's token,
// and at most max_handshakes wait at once: one accepted past the cap evicts
// the oldest (a flood of idle connections cannot keep the job's own
// processes out, they finish in a round trip), but never one younger than a
// quarter of the handshake timeout. While all are that young, accepting
// pauses (AcceptPausedUntil) and new connections wait in the kernel's
// backlog: a flooder that reconnects at once cannot make vigild churn
// connections as fast as it can open them. Once authenticated it counts
// against max_connections; a control (CLI) connection then has
// control_idle_ms to send its request.
//
// AuthFailureLog says which failures become `auth_failure` events: one per
// source per window, the rest counted into the next.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"
#include "common/vocabulary.h"

namespace vigil::coordinator {

class Admission {
 public:
  Admission(const SecuritySpec& security, const WorldSpec& world);

  // Accepted at `now_us`: the handshakes it evicts, oldest first.
  std::vector<uint64_t> Accepted(uint64_t id, int64_t now_us);
  // At the cap with none old enough to evict: when the oldest will be (the
  // caller accepts nothing until then). Otherwise nothing.
  std::optional<int64_t> AcceptPausedUntil(int64_t now_us) const;
  // Its Hello proved the token: counted, or FailedPrecondition (nothing
  // changed) when max_connections are authenticated already.
  Status Authenticated(uint64_t id, bool control, int64_t now_us);
  // A control connection sent its request: no longer held to control_idle_ms.
  void Served(uint64_t id);
  void Closed(uint64_t id);
  // Connections past their deadline at `now_us`, each with what it missed
  // (auth_reason::kTimeout, or "idle" for a control connection).
  std::vector<std::pair<uint64_t, std::string>> Expired(int64_t now_us) const;

  bool handshaking(uint64_t id) const { return handshaking_.count(id) > 0; }
  size_t handshakes() const { return handshaking_.size(); }
  size_t authenticated() const { return authenticated_.size(); }
  int max_connections() const { return max_connections_; }

 private:
  int64_t handshake_timeout_us_, control_idle_us_;
  int64_t min_evictable_us_;  // a handshake younger than this is not evicted
  size_t max_handshakes_;
  int max_connections_;
  std::map<uint64_t, int64_t> handshaking_;  // id (accept order) -> accepted at
  std::set<uint64_t> authenticated_;
  std::map<uint64_t, int64_t> idle_controls_;  // id -> authenticated at
};

class AuthFailureLog {
 public:
  struct Row {
    std::string source;
    int64_t count = 0;  // failures this row stands for
    std::map<std::string, int64_t> reasons;
    int64_t first_us = 0, last_us = 0;
  };
  // Sources tracked at once; failures from more are counted as "(other)".
  static constexpr size_t kMaxSources = 1024;
  static constexpr const char kOtherSources[] = "(other)";

  explicit AuthFailureLog(int64_t window_us) : window_us_(window_us) {}

  // A failure from `source`: a row to record now (the first of its
  // window), or nothing (it is counted into the row Flush gives at the
  // window's end).
  std::optional<Row> Failed(const std::string& source, const std::string& reason, int64_t now_us);
  // The rows of the windows over by `now_us` that counted failures not yet
  // recorded; sources quiet for a whole window are forgotten.
  std::vector<Row> Flush(int64_t now_us);
  // Every row owed, windows over or not (vigild is stopping).
  std::vector<Row> FlushAll() { return Flush(std::numeric_limits<int64_t>::max()); }

 private:
  struct Window {
    int64_t started_us = 0;
    Row pending;  // counted, not yet recorded
  };
  int64_t window_us_;
  std::map<std::string, Window> sources_;
};

}  // namespace vigil::coordinator
