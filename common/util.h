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

// 32 random bytes from the kernel as 64 hex characters.
std::string GenerateToken();
// Writes a fresh token to `path` with mode 0600 and returns it.
Result<std::string> WriteTokenFile(const std::string& path);
// Reads a token file, refusing one that others can read.
Result<std::string> ReadTokenFile(const std::string& path);

// A named logger writing "time level [component] message" to stderr.
std::shared_ptr<spdlog::logger> MakeLogger(const std::string& component);

// ISO-8601 UTC with milliseconds, for humans.
std::string FormatTimeMicros(int64_t us);

}  // namespace vigil
