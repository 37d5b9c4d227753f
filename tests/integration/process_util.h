// Helpers for tests that drive real vigil processes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace vigil::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out, err;
  // The last non-empty line of stdout.
  std::string LastLine() const {
    std::istringstream in(out);
    std::string line, last;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line;
    }
    return last;
  }
};

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `command` through /bin/sh with stdout and stderr captured to files in `scratch`.
inline CommandResult RunCommand(const std::string& command, const std::string& scratch) {
  const std::string out = scratch + "/cmd.out", err = scratch + "/cmd.err";
  const int status = std::system((command + " > " + out + " 2> " + err).c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(out);
  r.err = Slurp(err);
  return r;
}

// Pids of live processes whose environment or command line mentions `needle`
// (a work directory): how tests prove no rank, agent or vigild outlived a job.
inline std::vector<int> ProcessesMentioning(const std::string& needle) {
  std::vector<int> pids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const int pid = std::stoi(name);
    if (pid == ::getpid()) continue;
    std::string status = Slurp(entry.path().string() + "/stat");
    // Zombies are dead already (and reaped by their parent soon).
    const auto rp = status.rfind(')');
    if (rp != std::string::npos && rp + 2 < status.size() && status[rp + 2] == 'Z') continue;
    const std::string env = Slurp(entry.path().string() + "/environ");
    const std::string cmd = Slurp(entry.path().string() + "/cmdline");
    if (env.find(needle) != std::string::npos || cmd.find(needle) != std::string::npos)
      pids.push_back(pid);
  }
  return pids;
}

}  // namespace vigil::testing
