// GPU health on one host, for the agent to report to vigild:
//  - Xid errors, from the kernel log (/dev/kmsg: "NVRM: Xid (PCI:...): 79,
//    pid=..., ...") and from NVML's Xid events;
//  - uncorrectable ECC errors (NVML's volatile count rising) and thermal
//    slowdown (temperature at the slowdown threshold), from NVML.
// NVML is the driver's libnvidia-ml.so.1 (or $VIGIL_NVML_LIBRARY), loaded at
// run time: vigil builds without its header and runs on hosts without a GPU. Fault injection feeds
// kernel-log lines through the same parser, so every path from a line to a
// detection is exercised on CPU hosts too.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/xid.h"

namespace vigil::agent {

struct XidLine {
  int code = 0;
  std::string pci_bus_id;  // as the driver wrote it, e.g. "0000:3b:00"
  std::optional<int> pid;  // the process the driver blamed, when it knew
  std::string text;        // what follows the code
};
// Parses one kernel log record (a /dev/kmsg record, a dmesg line, or the
// bare message) holding "NVRM: Xid (PCI:BUS): CODE, ...".
std::optional<XidLine> ParseXidLine(const std::string& line);

// New lines of the kernel log, without blocking: /dev/kmsg (a record per
// read; opened at its end) or a plain file (lines appended after Open).
class KernelLogReader {
 public:
  static Result<std::unique_ptr<KernelLogReader>> Open(const std::string& path);
  ~KernelLogReader();
  KernelLogReader(const KernelLogReader&) = delete;
  KernelLogReader& operator=(const KernelLogReader&) = delete;
  std::vector<std::string> Poll();
  const std::string& path() const { return path_; }

 private:
  KernelLogReader(int fd, bool records, std::string path)
      : fd_(fd), records_(records), path_(std::move(path)) {}
  int fd_;
  bool records_;  // /dev/kmsg: one record per read()
  std::string path_;
  std::string partial_;
};

struct GpuFault {
  std::string type;  // xid | ecc | thermal
  int gpu = -1;      // local index; -1 when not known
  std::string pci_bus_id;
  int xid = 0;
  std::optional<int> pid;
  std::string source;  // kernel-log | nvml | injected
  std::string message;
};

// One GPU's health as NVML reads it now (for vigild's GPU metrics).
struct GpuReading {
  int gpu = 0;
  unsigned temperature_celsius = 0;
  unsigned slowdown_celsius = 0;  // 0: NVML does not know it
  uint64_t uncorrected_ecc_errors = 0;
};

class Nvml;

class GpuMonitor {
 public:
  // `kernel_log`: a path, or "" for none. NVML is used when it loads.
  explicit GpuMonitor(const std::string& kernel_log);
  ~GpuMonitor();
  // Where GPU faults come from on this host, for the agent's log.
  std::string Describe() const;
  // Faults seen since the last call.
  std::vector<GpuFault> Poll();
  // Every GPU NVML sees; none on a host without NVML.
  std::vector<GpuReading> Readings() const;
  // Fault injection: `line` is handled as if the kernel had logged it.
  void Inject(const std::string& line);
  // NVML's bus id of local GPU `gpu`, or a made-up one on a host without
  // NVML (injected lines name it; ParseXidLine reads it back).
  std::string BusIdOf(int gpu) const;
  std::optional<int> GpuOfBus(const std::string& bus) const;

 private:
  void FromLine(const std::string& line, const std::string& source, std::vector<GpuFault>* out);
  std::unique_ptr<KernelLogReader> kernel_log_;
  std::string kernel_log_error_;
  std::unique_ptr<Nvml> nvml_;
  std::string nvml_error_;
  std::vector<std::string> injected_;
  std::vector<uint64_t> ecc_seen_;
  std::vector<bool> hot_;
};

}  // namespace vigil::agent
