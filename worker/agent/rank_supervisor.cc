#include "worker/agent/rank_supervisor.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/process.h"
#include "common/rank_contract.h"
#include "common/util.h"

namespace vigil::agent {

Result<pid_t> RankSupervisor::Spawn(const RankLaunch& launch) {
  SpawnOptions o;
  o.argv = {launch.binary};
  o.env_add = launch.env;
  // A rank sees only the orders of its own launch.
  o.env_drop_prefix = std::string(rank_contract::kEnvPrefix);
  o.log_file = launch.log_file;
  o.new_process_group = true;
  o.parent_death_signal = SIGKILL;
  auto pid = SpawnProcess(o);
  if (pid.ok()) children_[pid.value()] = Child{launch.generation, launch.rank};
  return pid;
}

Status RankSupervisor::SignalRank(uint64_t generation, int rank, int sig) {
  for (auto& [pid, c] : children_) {
    if (c.generation == generation && c.rank == rank) {
      c.signal_sent_at_us = NowMicros();
      if (::kill(-pid, sig) != 0 && ::kill(pid, sig) != 0) {
        return Status::IoError("kill rank " + std::to_string(rank) + ": " + std::strerror(errno));
      }
      return Status::Ok();
    }
  }
  return Status::NotFound("rank " + std::to_string(rank) + " of generation " +
                          std::to_string(generation) + " is not running here");
}

void RankSupervisor::SignalAll(int64_t generation, int sig, bool by_agent) {
  for (auto& [pid, c] : children_) {
    if (generation >= 0 && static_cast<int64_t>(c.generation) != generation) continue;
    c.killed_by_agent = c.killed_by_agent || by_agent;
    if (::kill(-pid, sig) != 0) ::kill(pid, sig);
  }
}

void RankSupervisor::Reap() {
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    auto it = children_.find(pid);
    if (it == children_.end()) continue;
    // Anything the rank left in its process group goes with it.
    ::kill(-pid, SIGKILL);
    wire::RankExited e;
    e.set_generation(it->second.generation);
    e.set_rank(static_cast<uint32_t>(it->second.rank));
    e.set_pid(static_cast<uint32_t>(pid));
    e.set_exited_at_us(NowMicros());
    e.set_killed_by_agent(it->second.killed_by_agent);
    e.set_signal_sent_at_us(it->second.signal_sent_at_us);
    if (WIFSIGNALED(status)) {
      e.set_signal(WTERMSIG(status));
    } else {
      e.set_exit_code(WEXITSTATUS(status));
    }
    children_.erase(it);
    on_exit_(e);
  }
}

std::vector<std::pair<int, pid_t>> RankSupervisor::Ranks(uint64_t generation) const {
  std::vector<std::pair<int, pid_t>> out;
  for (const auto& [pid, c] : children_) {
    if (c.generation == generation) out.emplace_back(c.rank, pid);
  }
  return out;
}

std::vector<wire::LiveRank> RankSupervisor::All() const {
  std::vector<wire::LiveRank> out;
  for (const auto& [pid, c] : children_) {
    wire::LiveRank r;
    r.set_generation(c.generation);
    r.set_rank(static_cast<uint32_t>(c.rank));
    r.set_pid(static_cast<uint32_t>(pid));
    out.push_back(std::move(r));
  }
  return out;
}

int RankSupervisor::LiveRanks(int64_t generation) const {
  int n = 0;
  for (const auto& [pid, c] : children_) {
    if (generation < 0 || static_cast<int64_t>(c.generation) == generation) ++n;
  }
  return n;
}

}  // namespace vigil::agent
