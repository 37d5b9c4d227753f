// Helpers for tests that drive real vigil processes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/vigild_addr.h"
#include "logbook/logbook.h"

namespace vigil::testing {

// The built `vigil` command and the demo job (the tests' build defines where they are).
inline const std::string kVigil = std::string(VIGIL_BIN_DIR) + "/vigil";
inline const std::string kTiny = std::string(VIGIL_SOURCE_DIR) + "/examples/tiny.yaml";

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

// `vigil run JOB --workdir WORKDIR -o json EXTRA`, its exit code and the
// summary it ends with (its last stdout line); `env`, VAR=VALUE words put
// before the command.
struct JobRun {
  int exit_code = -1;
  nlohmann::json summary;
  std::string err;
};
inline JobRun VigilRun(const std::string& job, const std::string& workdir, const std::string& extra,
                       const std::string& scratch, const std::string& env = "") {
  auto r = RunCommand(env + (env.empty() ? "" : " ") + kVigil + " run " + job + " --workdir " +
                          workdir + " -o json " + extra,
                      scratch);
  return {r.exit_code, nlohmann::json::parse(r.LastLine(), nullptr, false), r.err};
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

// Waits for `pred` up to `timeout`, polling; whether it came true.
template <class Pred>
bool WaitUntil(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// vigild's addresses from <workdir>/vigild.addr (common/vigild_addr.h), once
// it has written them.
using VigildAddress = VigildAddr;
inline std::optional<VigildAddress> ReadVigildAddress(const std::string& workdir) {
  auto a = ReadVigildAddr(workdir);
  if (!a.ok()) return std::nullopt;
  return a.value();
}
inline std::optional<VigildAddress> WaitForVigildAddress(const std::string& workdir,
                                                         std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (auto addr = ReadVigildAddress(workdir)) return addr;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// vigild's /api/v1/status once its state is `state` (or null past `timeout`).
inline nlohmann::json WaitForJobState(const std::string& workdir, const std::string& state,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto addr = ReadVigildAddress(workdir)) {
      auto r = ApiGet(workdir, addr->http, "/api/v1/status", std::chrono::milliseconds(1000));
      if (r.ok() && r->status == 200) {
        auto j = nlohmann::json::parse(r->body, nullptr, false);
        if (j.is_object() && j.value("state", "") == state) return j;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return nullptr;
}

// Whether the logbook's newest run reaches `status` within `timeout`. vigild's
// state changes at once, its logbook rows a writer's commit later; the run's
// status is written after the rows that led to it (the detection, the
// interventions), so once it shows they are all in.
inline bool WaitForLoggedRunStatus(const std::string& workdir, const std::string& status,
                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto lb = Logbook::Open(workdir + "/logbook.sqlite", false); lb.ok()) {
      if (auto runs = (*lb)->Runs(); runs.ok() && !runs->empty() && runs->back().status == status)
        return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Starts `vigil ARGS...` in the background, output to `log_file`; it dies with the test.
inline pid_t StartVigil(const std::vector<std::string>& args, const std::string& log_file) {
  SpawnOptions o;
  o.argv = {kVigil};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.log_file = log_file;
  o.parent_death_signal = SIGKILL;
  auto pid = SpawnProcess(o);
  return pid.ok() ? pid.value() : -1;
}

// Starts the built vigild for `job` in `workdir`; it dies with the test.
inline pid_t StartVigild(const std::string& job, const std::string& workdir,
                         const std::string& token_file, const std::string& log_file) {
  SpawnOptions o;
  o.argv = {std::string(VIGIL_BIN_DIR) + "/vigild",
            "--job",
            job,
            "--workdir",
            workdir,
            "--token-file",
            token_file};
  o.log_file = log_file;
  o.parent_death_signal = SIGKILL;
  auto pid = SpawnProcess(o);
  return pid.ok() ? pid.value() : -1;
}

}  // namespace vigil::testing
