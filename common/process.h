// Starting child processes the way every vigil parent does: stdout and
// stderr appended to a log file, stdin from /dev/null, a clean signal mask,
// PR_SET_PDEATHSIG so the child dies with its parent, and optionally its own
// process group (so one signal reaches everything it spawns).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil {

struct SpawnOptions {
  std::vector<std::string> argv;     // argv[0] is the executable path
  std::vector<std::string> env_add;  // KEY=VALUE on top of the parent's environment
  std::string env_drop_prefix;       // parent variables with this prefix are not inherited
  std::string log_file;              // empty: inherit stdout/stderr
  bool new_process_group = false;
  int parent_death_signal = 0;  // 0: none
};

Result<pid_t> SpawnProcess(const SpawnOptions& options);

// `name` found on PATH (as a shell would); a name with a '/' is itself.
Result<std::string> FindExecutable(const std::string& name);

struct ProcessOutcome {
  int wait_status = 0;           // as waitpid gives it
  std::string output;            // stdout and stderr together (options.log_file empty)
  bool ok() const;               // exited 0
  std::string Describe() const;  // "exited 1", "killed by signal 9"
};
// Starts a program in a process group of its own and waits for it, at most
// `timeout` (the named limit of whoever calls): past it the group is
// SIGKILLed, the program reaped, and the result is Timeout. Blocks: never call it on an event loop.
// Its output is captured unless options.log_file says where it goes.
Result<ProcessOutcome> RunProcess(SpawnOptions options, std::chrono::milliseconds timeout);

}  // namespace vigil
