// Small helpers the benchmarks share: flags and timing.
#pragma once

#include <chrono>
#include <string>

namespace vigil::bench {

using Clock = std::chrono::steady_clock;

// The value after `name` on the command line, or `fallback`.
inline const char* Arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return argv[i + 1];
  return fallback;
}

inline double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace vigil::bench
