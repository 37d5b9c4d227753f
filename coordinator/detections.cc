#include "coordinator/detections.h"

#include <string.h>

#include "common/rank_contract.h"
#include "common/vocabulary.h"
#include "common/xid.h"

namespace vigil::coordinator {

using nlohmann::json;

Detection RankExitDetection(const wire::RankExited& e, int64_t generation, int64_t now_us) {
  namespace rc = rank_contract;
  Detection d;
  d.kind = kind::kProcessExit;
  if (e.signal() == 0) {
    switch (e.exit_code()) {
      case rc::kExitNonfinite:
        d.kind = kind::kNonfinite;
        break;
      case rc::kExitCheckpointCorrupt:
        d.kind = kind::kCheckpointCorrupt;
        break;
      case rc::kExitCollective:
        d.kind = kind::kCollectiveError;
        break;
      case rc::kExitConfig:
        d.kind = kind::kConfigError;
        break;
      default:
        break;
    }
  }
  d.rank = static_cast<int>(e.rank());
  d.codes = {e.signal() ? 128 + e.signal() : e.exit_code()};
  d.time_us = now_us;
  d.detail = json{{"pid", e.pid()}, {"exited_at_us", e.exited_at_us()}, {"generation", generation}};
  if (e.signal() != 0) {
    d.detail["signal"] = e.signal();
    d.detail["signal_name"] = sigabbrev_np(e.signal()) ? sigabbrev_np(e.signal()) : "";
  } else {
    d.detail["exit_code"] = e.exit_code();
  }
  if (e.killed_by_agent()) d.detail["killed_by_agent"] = true;
  return d;
}

Detection GpuFaultDetection(const wire::GpuFault& g, const std::string& host, int64_t now_us) {
  Detection d;
  d.kind = g.type() == "thermal" ? kind::kGpuThermal : kind::kGpuFault;
  d.host = host;
  if (g.rank() >= 0) d.rank = g.rank();
  d.time_us = g.at_us() > 0 ? g.at_us() : now_us;
  d.detail = json{{"type", g.type()},       {"source", g.source()},
                  {"gpu", g.gpu()},         {"pci_bus_id", g.pci_bus_id()},
                  {"message", g.message()}, {"generation", g.generation()}};
  if (g.at_us() > 0) d.detail["seen_by_agent_at_us"] = g.at_us();
  if (g.type() == "ecc") d.codes = {48};
  if (g.xid()) {
    d.codes = {static_cast<int64_t>(g.xid())};
    d.detail["xid"] = g.xid();
    if (const XidInfo* info = LookupXid(static_cast<int>(g.xid()))) {
      d.detail["xid_name"] = info->name;
      d.detail["xid_remedy"] = info->remedy;
    }
  }
  d.summary = "GPU " + std::to_string(g.gpu()) + " of host " + host +
              (g.rank() >= 0 ? " (rank " + std::to_string(g.rank()) + ")" : std::string()) + ": " +
              g.message();
  return d;
}

Detection SaveFailedDetection(const wire::RankReport& r, int64_t now_us) {
  Detection d;
  d.kind = kind::kCheckpointWriteFailed;
  d.rank = static_cast<int>(r.rank());
  d.step = static_cast<int64_t>(r.step());
  d.time_us = now_us;
  d.detail = json{{"reason", r.message()}, {"step", r.step()}};
  d.summary = "the checkpoint of step " + std::to_string(r.step()) + " failed on rank " +
              std::to_string(r.rank()) + ": " + r.message() + "; older checkpoints are intact";
  return d;
}

Detection HostLostDetection(const std::string& host, const std::string& why, int64_t now_us) {
  Detection d;
  d.kind = kind::kHostLost;
  d.host = host;
  d.time_us = now_us;
  d.detail = json{{"reason", why}};
  d.summary = "host " + host + " lost: " + why;
  return d;
}

Detection StartTimeoutDetection(int64_t generation, int start_timeout_ms, int64_t now_us) {
  Detection d;
  d.kind = kind::kStartTimeout;
  d.time_us = now_us;
  d.detail = json{{"generation", generation}, {"start_timeout_ms", start_timeout_ms}};
  d.summary = "generation " + std::to_string(generation) + " did not reach its first step within " +
              std::to_string(start_timeout_ms) + " ms";
  return d;
}

}  // namespace vigil::coordinator
