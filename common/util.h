// Small shared pieces: wall-clock time in microseconds (comparable across the
// processes of one host), auth tokens, logger setup.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "common/status.h"

namespace vigil {

inline int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Seconds of steady time since t0.
inline double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Adds the wall time of its scope, in seconds, to a counter.
class ScopedSeconds {
 public:
  explicit ScopedSeconds(double* total) : total_(total), t0_(std::chrono::steady_clock::now()) {}
  ~ScopedSeconds() { *total_ += SecondsSince(t0_); }
  ScopedSeconds(const ScopedSeconds&) = delete;
  ScopedSeconds& operator=(const ScopedSeconds&) = delete;

 private:
  double* total_;
  std::chrono::steady_clock::time_point t0_;
};

// 32 random bytes from the kernel as 64 hex characters.
std::string GenerateToken();
// This machine's host name ("" if it has none).
std::string HostName();

// `s` without the spaces, tabs and line ends it begins and ends with.
std::string Trim(const std::string& s);
// Writes a fresh token to `path` with mode 0600 and returns it.
Result<std::string> WriteTokenFile(const std::string& path);
// Reads a token file, refusing one that others can read.
Result<std::string> ReadTokenFile(const std::string& path);

// Raises this process's open-file soft limit to its hard limit (a
// descriptor per connection: vigild, its load and flood tests). The limit
// now in force, or why it could not be raised.
Result<uint64_t> RaiseOpenFileLimit();

// A named logger writing "time level [component] message" to stderr.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& component);

// ISO-8601 UTC with milliseconds, for humans.
std::string FormatTimeMicros(int64_t us);

// "90s", "30m", "6h", "2d", "1w", "500ms" -> microseconds.
Result<int64_t> ParseDuration(const std::string& text);

// A point in time as people type it (journalctl's habits), in microseconds
// since the epoch: "now"; a duration ago ("2h", "30m"); or UTC as
// "2026-11-24T04:00:00[.123][Z]", "2026-11-24 04:00[:00]" or "2026-11-24"
// (midnight). Anything else is an error that quotes the text.
Result<int64_t> ParseTimePoint(const std::string& text, int64_t now_us);

}  // namespace vigil
