// Heartbeat loss: an agent that has sent nothing (no heartbeat, no
// registration) for limits.heartbeat_timeout_ms is lost, whatever its
// connection says: a host that froze, a link cut without a reset. Reported
// once per agent.
//
// Reports only. Single-threaded; time (steady microseconds) is passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace vigil::coordinator {

class HeartbeatMonitor {
 public:
  explicit HeartbeatMonitor(int timeout_ms) : timeout_us_(int64_t{timeout_ms} * 1000) {}
  // `agent` was heard from (it registered, or sent a heartbeat).
  void Beat(int agent, int64_t now_us) { last_[agent] = now_us; }
  // `agent` is lost by other means (its connection closed): no longer watched.
  void Forget(int agent) { last_.erase(agent); }
  // How many agents are watched, and how many of them have been silent
  // for at least `quiet_us`.
  size_t watched() const { return last_.size(); }
  size_t QuietFor(int64_t quiet_us, int64_t now_us) const;
  // Agents silent past the timeout, each once (then forgotten).
  std::vector<int> Silent(int64_t now_us);

 private:
  int64_t timeout_us_;
  std::map<int, int64_t> last_;
};

}  // namespace vigil::coordinator
