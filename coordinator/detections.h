// The detections that come straight from one message or one timer: a rank's
// exit, a GPU fault, a failed save, a lost host, a generation that never
// started. Each function turns what was seen into a Detection and nothing
// more; the stateful detectors (hangs, numerics, stragglers) have files of
// their own.
#pragma once

#include <string>

#include "common/vigil.pb.h"
#include "coordinator/detection.h"

namespace vigil::coordinator {

// A rank that exited other than 0: classified by vigil-train's exit code
// (common/rank_contract.h): 5 nonfinite, 4 checkpoint_corrupt, 3
// collective_error, 2 config_error, anything else (and any signal)
// process_exit. `codes` is the exit code or 128 + the signal.
Detection RankExitDetection(const wire::RankExited& e, int64_t generation, int64_t now_us);

// A GPU fault an agent reported: gpu_thermal for a thermal one, else
// gpu_fault with the Xid as code (a rising uncorrectable ECC count is what
// the kernel logs as Xid 48). Its time is the agent's reading of it.
Detection GpuFaultDetection(const wire::GpuFault& g, const std::string& host, int64_t now_us);

// A checkpoint save the ranks abandoned (training goes on).
Detection SaveFailedDetection(const wire::RankReport& r, int64_t now_us);

// A host whose agent went away: `why` says how it was noticed.
Detection HostLostDetection(const std::string& host, const std::string& why, int64_t now_us);

// A generation that reached no step within limits.start_timeout_ms.
Detection StartTimeoutDetection(int64_t generation, int start_timeout_ms, int64_t now_us);

}  // namespace vigil::coordinator
