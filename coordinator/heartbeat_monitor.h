// Heartbeat loss: an agent that has sent nothing (no heartbeat, no
// registration) for limits.heartbeat_timeout_ms is lost, whatever its
// connection says: a host that froze, a link cut without a reset. Reported
// once per agent.
//
// Reports only. Single-threaded; time (steady microseconds) is passed in.
// Agents are kept in the order they were last heard from, so that each
// tick's questions (who is silent, how many are quiet) cost what they
// answer, not one step per agent: 10,000 agents at 1 Hz, 20 ticks a second
// (bench/coordinator_load).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace vigil::coordinator {

class HeartbeatMonitor {
 public:
  explicit HeartbeatMonitor(int timeout_ms) : timeout_us_(int64_t{timeout_ms} * 1000) {}
  // `agent` was heard from (it registered, or sent a heartbeat).
  void Beat(int agent, int64_t now_us);
  // `agent` is lost by other means (its connection closed): no longer watched.
  void Forget(int agent);
  // How many agents are watched, and how many of them have been silent
  // for at least `quiet_us`.
  size_t watched() const { return index_.size(); }
  size_t QuietFor(int64_t quiet_us, int64_t now_us) const;
  // Agents silent past the timeout (in agent order), each once (then
  // forgotten).
  std::vector<int> Silent(int64_t now_us);

 private:
  struct Heard {
    int agent;
    int64_t at_us;
  };
  int64_t timeout_us_;
  std::list<Heard> by_time_;  // least recently heard first
  std::unordered_map<int, std::list<Heard>::iterator> index_;
};

}  // namespace vigil::coordinator
