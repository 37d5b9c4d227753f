// Crash points: named places in vigild where a test has it die at once, by
// SIGKILL, as a real crash would (what reached the kernel stays, nothing
// more of vigild runs). They are how a test kills vigild at an exact point
// of a protocol (after a teardown order, during a launch, while a
// checkpoint commits) that no timing could hit reliably. Configured from
// the environment, which `vigil run` passes on to every vigild it starts:
//
//   VIGIL_CRASH_AT=POINT[@GENERATION]  die on reaching POINT (in that
//                                      generation; any generation if none)
//   VIGIL_CRASH_ONCE=FILE              die only in the process that creates
//                                      FILE (the vigild taking the run over
//                                      passes the same point again: it lives)
//
// Unset (any production run), reaching a point is one comparison. A
// malformed VIGIL_CRASH_AT is an error at start, not a point never reached.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace vigil {

// The points vigild has, each reached once per occurrence.
namespace crash_point {
inline constexpr std::string_view kTeardownConfirmed =
    "teardown-confirmed";                                         // an agent's GenerationStopped
inline constexpr std::string_view kRankStarted = "rank-started";  // a rank's STARTED report
inline constexpr std::string_view kSaving = "saving";  // a rank blocked on a checkpoint save
inline constexpr std::string_view kCheckpointReported =
    "checkpoint-reported";  // before it is recorded
}  // namespace crash_point

class CrashPoints {
 public:
  CrashPoints() = default;  // none armed
  // Parses VIGIL_CRASH_AT and VIGIL_CRASH_ONCE.
  static Result<CrashPoints> FromEnvironment();
  // Parses "POINT[@GENERATION]" (an unknown point is an error).
  static Result<CrashPoints> Parse(std::string_view at, std::string once_file);

  bool armed() const { return !point_.empty(); }
  // True when reaching `point` in `generation` is where this process dies.
  bool Matches(std::string_view point, int64_t generation) const;
  // Dies by SIGKILL when Matches (and, with a once-file, this process is
  // the one that creates it); returns otherwise.
  void Reach(std::string_view point, int64_t generation) const;

 private:
  std::string point_;
  std::optional<int64_t> generation_;
  std::string once_file_;
};

}  // namespace vigil
