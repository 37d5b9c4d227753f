// Starting child processes the way every vigil parent does: stdout and
// stderr appended to a log file, stdin from /dev/null, a clean signal mask,
// PR_SET_PDEATHSIG so the child dies with its parent, and optionally its own
// process group (so one signal reaches everything it spawns).
#pragma once

#include <sys/types.h>

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

}  // namespace vigil
