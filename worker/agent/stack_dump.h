// What a rank is doing, read from outside: its process state from /proc, and
// a dump of every thread's stack (/proc's kernel stacks, and gdb's user
// stacks where gdb is installed and the rank is not stopped: attaching to a
// stopped process would resume it).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

namespace vigil::agent {

struct ProcessState {
  std::string state;  // R, S, D, T, t, Z, ... ("" if the process is gone)
  std::string wchan;
  uint64_t cpu_ticks = 0;  // utime + stime
};

ProcessState ReadProcessState(pid_t pid);

// Writes the dump to `path` (truncating it). Blocks up to `gdb_timeout`
// plus the /proc reads; call it off the agent's event loop.
void DumpStacks(pid_t pid, const std::string& path, std::chrono::milliseconds gdb_timeout);

}  // namespace vigil::agent
