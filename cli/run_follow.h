// What `vigil run` shows while it follows a job, whichever launcher started
// it: the progress line (from vigild's /api/v1/status), the interrupt that
// asks for the job to stop, and the small waits around child processes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

namespace vigil::cli {

// SIGINT and SIGTERM set a flag (Interrupted()) rather than end vigil run:
// it stops the job, waits for it to be recorded, then prints the summary.
// SIGPIPE is ignored.
void InstallInterruptHandler();
bool Interrupted();
// How many SIGINT and SIGTERM have come so far (each counted).
int Interrupts(int signal);

// "42s", "3m07s".
std::string FormatDuration(double seconds);

// Waits for the child `pid` up to `timeout`; its wait status, or -1.
int WaitFor(pid_t pid, std::chrono::milliseconds timeout);

// One line of progress: step, loss, throughput, restarts, generation, state
// and an ETA. Redrawn in place on a terminal; else a line every 2 s, and at
// every change of state.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled);
  void Show(const nlohmann::json& status, double elapsed);
  void Done();

 private:
  bool enabled_, tty_;
  double first_step_at_ = -1, last_print_ = -1e9;
  int64_t first_step_seen_ = 0;
  std::string last_state_;
};

}  // namespace vigil::cli
