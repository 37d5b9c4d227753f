// The coordinator while it is cut off from its agents (isolation.h): who is
// away, who came back, and when the wait ends.
#include <nlohmann/json.hpp>

#include "common/util.h"
#include "coordinator/coordinator.h"

namespace vigil::coordinator {

using nlohmann::json;

void Coordinator::Reattach(const TcpConnection::Ptr& conn, int agent, const wire::Hello& hello) {
  CheckStall();
  auto& a = registry_.agents()[static_cast<size_t>(agent)];
  // The old connection goes quietly: it is no longer this agent's.
  if (auto old = std::move(a.conn)) {
    connections_.erase(old->id());
    old->Close(Status::Unavailable("replaced by the agent's new connection"));
  }
  connections_[conn->id()].role = Role::kAgent;
  SendOkAck(conn, AgentAck(agent));
  registry_.Attach(agent, conn);  // and the orders kept while it was away
  log_->info("agent {} (pid {}) reconnected in place as agent {}", a.host, a.pid, agent);
  // Ranks of a generation that ended meanwhile (its teardown order was
  // lost with the old connection) go now.
  TearDownLiveRanks(agent, hello, controller_->progress().generation);
  heartbeats_.Beat(agent, clock_.SteadyMicros());
  if (isolation_.waiting()) OnAgentBack(agent);
}

void Coordinator::OnAgentAway(int agent, const std::string& why) {
  auto& a = registry_.agents()[static_cast<size_t>(agent)];
  if (a.lost) return;
  heartbeats_.Forget(agent);
  if (auto old = std::move(a.conn)) {
    connections_.erase(old->id());
    old->Close(Status::Unavailable(why));
  }
  if (away_.insert(agent).second) {
    log_->warn("agent {} is away ({}): waited for, not lost, while vigild is cut off", a.host, why);
  }
}

void Coordinator::OnAgentBack(int agent) {
  const int64_t now = clock_.SteadyMicros();
  if (isolation_.Heard(now)) {
    log_->warn("heard from an agent again after {} ms cut off: the others have {} ms to come back",
               (now - isolation_.since_us()) / 1000, 2 * spec_.limits.heartbeat_timeout_ms);
    // Those still connected start their heartbeat clocks afresh.
    for (int i = 0; i < registry_.agent_count(); ++i) {
      if (registry_.agent_connected(i) && !away_.count(i)) heartbeats_.Beat(i, now);
    }
  }
  if (away_.erase(agent)) came_back_.insert(registry_.agent_host(agent));
  // The last one back ends the wait now, not at the next tick: its replayed
  // reports may end the job, and its goodbye is then no cut-off.
  if (away_.empty() && !came_back_.empty()) EndIsolation();
}

void Coordinator::CheckStall() {
  const auto now = std::chrono::steady_clock::now();
  const auto stood = now - last_tick_;
  if (last_tick_.time_since_epoch().count() == 0 ||
      stood <= std::chrono::milliseconds(spec_.limits.heartbeat_timeout_ms / 2))
    return;
  // A loop that stood still (vigild stopped, or starved) heard nobody: the
  // silence is its own, not the agents'. Their heartbeats count from now,
  // and those whose connections closed meanwhile may come back in place.
  log_->warn("vigild's event loop stood still for {} ms: agents' heartbeats count from now",
             std::chrono::duration_cast<std::chrono::milliseconds>(stood).count());
  const int64_t steady = clock_.SteadyMicros();
  if (!isolation_.waiting()) isolation_cause_ = "event loop stood still";
  isolation_.StoodStill(steady);
  for (int a = 0; a < registry_.agent_count(); ++a) {
    if (registry_.agent_connected(a) && !away_.count(a)) heartbeats_.Beat(a, steady);
  }
  last_tick_ = now;
}

void Coordinator::EndIsolation(bool job_over) {
  const int64_t now = clock_.SteadyMicros();
  json lost = json::array();
  const auto away = std::move(away_);
  away_.clear();
  for (int agent : away) lost.push_back(registry_.agent_host(agent));
  if (isolation_.waiting()) isolation_.Finish();
  controller_->OnAgentsBack();
  if (came_back_.empty() && lost.empty()) {  // a stall nobody noticed
    isolation_cause_.clear();
    return;
  }
  controller_->RecordEvent(
      kind::kCoordinatorCutOff,
      json{{"cause",
            isolation_cause_.empty() ? "every agent fell silent at once" : isolation_cause_},
           {"waited_ms", (now - isolation_.since_us()) / 1000},
           {"hosts_back", came_back_},
           // A job that ended meanwhile loses nobody: those not back are named.
           {job_over ? "hosts_not_back" : "hosts_lost", lost}});
  log_->warn("cut-off over after {} ms: {} host(s) back, {} {}",
             (now - isolation_.since_us()) / 1000, came_back_.size(), lost.size(),
             job_over ? "not back (the job is over)" : "lost");
  came_back_.clear();
  isolation_cause_.clear();
  if (job_over) return;
  for (int agent : away) {
    MarkAgentLost(agent, "did not come back within " +
                             std::to_string(2 * spec_.limits.heartbeat_timeout_ms) +
                             " ms (twice limits.heartbeat_timeout_ms) of vigild's cut-off ending");
  }
}

}  // namespace vigil::coordinator
