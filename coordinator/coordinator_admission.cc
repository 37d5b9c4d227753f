// vigild's bounded connections (admission.h): what is accepted, evicted,
// timed out or refused, and the auth_failure rows that record it.
#include <nlohmann/json.hpp>

#include "common/util.h"
#include "coordinator/coordinator.h"

namespace vigil::coordinator {

using nlohmann::json;

void Coordinator::Admit(const TcpConnection::Ptr& conn) {
  for (uint64_t oldest : admission_.Accepted(conn->id(), clock_.SteadyMicros())) {
    FailAuthentication(oldest, auth_reason::kEvicted,
                       "evicted: security.max_handshakes (" +
                           std::to_string(spec_.security.max_handshakes) +
                           ") connections were awaiting authentication");
  }
  metrics_.SetConnections(admission_.handshakes(), admission_.authenticated());
}

void Coordinator::FailAuthentication(uint64_t id, const std::string& reason,
                                     const std::string& why) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  RecordAuthFailureFrom(it->second.source, reason, why);
  // Forgotten first: its close is not counted a second time.
  admission_.Closed(id);
  auto conn = it->second.conn;
  conn->Close(Status::FailedPrecondition(why));
}

void Coordinator::RecordAuthFailureFrom(const std::string& source, const std::string& reason,
                                        const std::string& why) {
  metrics_.AuthFailures(reason).Increment();
  if (auto row = auth_failures_.Failed(source, reason, clock_.SteadyMicros())) {
    log_->warn(
        "connection from {} failed to authenticate ({}): {}; more from it this minute are "
        "counted, not logged",
        source, reason, why);
    RecordAuthFailure(*row);
  }
}

void Coordinator::RecordAuthFailure(const AuthFailureLog::Row& row) {
  if (!controller_) return;
  controller_->RecordEvent(kind::kAuthFailure,
                           json{{"source", row.source},
                                {"count", row.count},
                                {"reasons", row.reasons},
                                {"window_s", kAuthFailureWindowUs / 1'000'000},
                                {"span_ms", (row.last_us - row.first_us) / 1000}});
}

void Coordinator::EnforceDeadlines(bool loop_stood_still) {
  const int64_t now = clock_.SteadyMicros();
  if (!loop_stood_still) {
    for (const auto& [id, missed] : admission_.Expired(now)) {
      if (missed == auth_reason::kTimeout) {
        FailAuthentication(id, missed,
                           "no proof of the job's token within security.handshake_timeout_ms (" +
                               std::to_string(spec_.security.handshake_timeout_ms) + " ms)");
      } else if (auto it = connections_.find(id); it != connections_.end()) {
        auto conn = it->second.conn;
        conn->Close(Status::FailedPrecondition("no request within security.control_idle_ms (" +
                                               std::to_string(spec_.security.control_idle_ms) +
                                               " ms)"));
      }
    }
  }
  for (const auto& row : auth_failures_.Flush(now)) RecordAuthFailure(row);
}

}  // namespace vigil::coordinator
