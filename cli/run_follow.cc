#include "cli/run_follow.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

namespace vigil::cli {

using nlohmann::json;

namespace {
volatile sig_atomic_t g_interrupted = 0, g_sigints = 0, g_sigterms = 0;
void OnInterrupt(int sig) {
  g_interrupted = 1;
  if (sig == SIGINT) g_sigints = g_sigints + 1;
  if (sig == SIGTERM) g_sigterms = g_sigterms + 1;
}
}  // namespace

void InstallInterruptHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool Interrupted() { return g_interrupted != 0; }

int Interrupts(int signal) {
  return signal == SIGINT ? g_sigints : signal == SIGTERM ? g_sigterms : 0;
}

std::string FormatDuration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  else
    std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

int WaitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

ProgressLine::ProgressLine(bool enabled) : enabled_(enabled), tty_(::isatty(STDERR_FILENO)) {}

void ProgressLine::Show(const json& s, double elapsed) {
  if (!enabled_ || !s.is_object()) return;
  const int64_t step = s.value("step", 0), total = s.value("total_steps", 0);
  if (step > first_step_seen_ && first_step_at_ < 0) {
    first_step_at_ = elapsed;
    first_step_seen_ = step;
  }
  std::string eta = "-";
  if (first_step_at_ >= 0 && step > first_step_seen_ && total > step) {
    const double rate = static_cast<double>(step - first_step_seen_) / (elapsed - first_step_at_);
    if (rate > 0) eta = FormatDuration(static_cast<double>(total - step) / rate);
  }
  char line[256];
  std::snprintf(
      line, sizeof(line),
      "[%s] step %lld/%lld  loss %.4f  %.0f tok/s  restarts %d  gen %lld  %s  ETA %s",
      FormatDuration(elapsed).c_str(), static_cast<long long>(step), static_cast<long long>(total),
      s.value("loss", 0.0), s.value("tokens_per_second", 0.0), s.value("restarts", 0),
      static_cast<long long>(s.value("generation", 0)), s.value("state", "?").c_str(), eta.c_str());
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line);
  } else if (elapsed - last_print_ >= 2.0 || s.value("state", "") != last_state_) {
    std::fprintf(stderr, "%s\n", line);
    last_print_ = elapsed;
  }
  last_state_ = s.value("state", "");
}

void ProgressLine::Done() {
  if (enabled_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace vigil::cli
