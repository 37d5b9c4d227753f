// Spawns, signals and reaps the trainer ranks of one host.
//
// Each rank runs in its own process group (so a signal reaches anything it
// spawns) with PR_SET_PDEATHSIG set to SIGKILL (so a dead agent leaves no
// rank behind), stdout and stderr appended to its own log file. Reaping is
// driven by SIGCHLD on the agent's io_context; every exit is reported with
// its code or signal, the moment waitpid returns it.
// Single-threaded: call from the io_context's thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/vigil.pb.h"

namespace vigil::agent {

struct RankLaunch {
  uint64_t generation = 0;
  int rank = 0;
  int local_rank = 0;
  std::string binary;
  std::vector<std::string> env;  // KEY=VALUE, added to the agent's environment
  std::string log_file;
};

class RankSupervisor {
 public:
  using ExitHandler = std::function<void(const wire::RankExited&)>;
  explicit RankSupervisor(ExitHandler on_exit) : on_exit_(std::move(on_exit)) {}

  Result<pid_t> Spawn(const RankLaunch& launch);
  // Signals one rank's process group; records when, for detection latency.
  Status SignalRank(uint64_t generation, int rank, int sig);
  // Signals every live rank of `generation` (all generations if < 0).
  void SignalAll(int64_t generation, int sig, bool by_agent);
  // Reaps whatever has exited (call on SIGCHLD).
  void Reap();
  int LiveRanks(int64_t generation = -1) const;
  // (rank, pid) of every live rank of `generation`.
  std::vector<std::pair<int, pid_t>> Ranks(uint64_t generation) const;
  // Every live rank, of any generation.
  std::vector<wire::LiveRank> All() const;

 private:
  struct Child {
    uint64_t generation;
    int rank;
    int64_t signal_sent_at_us = 0;
    bool killed_by_agent = false;
  };
  ExitHandler on_exit_;
  std::map<pid_t, Child> children_;
};

}  // namespace vigil::agent
