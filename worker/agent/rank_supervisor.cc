#include "worker/agent/rank_supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/util.h"

extern char** environ;

namespace vigil::agent {

Result<pid_t> RankSupervisor::Spawn(const RankLaunch& launch) {
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "VIGIL_", 6) != 0) env_strings.emplace_back(*e);
  }
  env_strings.insert(env_strings.end(), launch.env.begin(), launch.env.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string binary = launch.binary;
  char* argv[] = {binary.data(), nullptr};
  const pid_t parent = ::getpid();

  int log_fd = ::open(launch.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return Status::IoError("open " + launch.log_file + ": " + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    return Status::IoError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the agent died before prctl took effect
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  ::close(log_fd);
  ::setpgid(pid, pid);  // also from the parent, so a signal right away finds the group
  children_[pid] = Child{launch.generation, launch.rank};
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
  return Status::NotFound("rank " + std::to_string(rank) + " of generation " + std::to_string(generation) +
                          " is not running here");
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

int RankSupervisor::LiveRanks(int64_t generation) const {
  int n = 0;
  for (const auto& [pid, c] : children_) {
    if (generation < 0 || static_cast<int64_t>(c.generation) == generation) ++n;
  }
  return n;
}

}  // namespace vigil::agent
