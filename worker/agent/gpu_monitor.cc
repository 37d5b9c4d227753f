#include "worker/agent/gpu_monitor.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <tuple>

namespace vigil::agent {

namespace {

// "0000:3b:00", "00000000:3B:00.0" -> "0000:3b:00": one spelling for both
// the kernel's and NVML's bus ids.
std::string CanonicalBus(const std::string& bus) {
  unsigned domain = 0, b = 0, dev = 0;
  if (std::sscanf(bus.c_str(), "%x:%x:%x", &domain, &b, &dev) != 3) return bus;
  char out[32];
  std::snprintf(out, sizeof(out), "%04x:%02x:%02x", domain & 0xffff, b & 0xff, dev & 0xff);
  return out;
}

}  // namespace

std::optional<XidLine> ParseXidLine(const std::string& line) {
  // /dev/kmsg: "PRIO,SEQ,TIME,FLAGS;MESSAGE"; dmesg: "[  12.3] MESSAGE".
  static const std::regex kXid(R"(NVRM: Xid \(PCI:([0-9A-Fa-f:.]+)\): (\d+),\s*(.*))");
  std::smatch m;
  if (!std::regex_search(line, m, kXid)) return std::nullopt;
  XidLine x;
  x.pci_bus_id = CanonicalBus(m[1].str());
  try {
    x.code = std::stoi(m[2].str());
  } catch (const std::exception&) {
    return std::nullopt;
  }
  x.text = m[3].str();
  while (!x.text.empty() && (x.text.back() == '\n' || x.text.back() == '\r')) x.text.pop_back();
  static const std::regex kPid(R"(pid=(\d+))");
  std::smatch p;
  if (std::regex_search(x.text, p, kPid)) x.pid = std::stoi(p[1].str());
  return x;
}

Result<std::unique_ptr<KernelLogReader>> KernelLogReader::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status::IoError("open " + path + ": " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  const bool records = S_ISCHR(st.st_mode);
  // Only what is logged from now on: old Xids were handled (or not) before.
  ::lseek(fd, 0, SEEK_END);
  return std::unique_ptr<KernelLogReader>(new KernelLogReader(fd, records, path));
}

KernelLogReader::~KernelLogReader() { ::close(fd_); }

std::vector<std::string> KernelLogReader::Poll() {
  std::vector<std::string> lines;
  char buf[8192];
  for (int reads = 0; reads < 1024; ++reads) {
    const ssize_t n = ::read(fd_, buf, sizeof(buf));
    if (n < 0 && errno == EPIPE) continue;  // kmsg: records were overwritten; go on
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (records_) {
      lines.emplace_back(buf, static_cast<size_t>(n));
      continue;
    }
    partial_.append(buf, static_cast<size_t>(n));
    size_t start = 0, nl;
    while ((nl = partial_.find('\n', start)) != std::string::npos) {
      lines.push_back(partial_.substr(start, nl - start));
      start = nl + 1;
    }
    partial_.erase(0, start);
  }
  return lines;
}

// The driver's NVML, through dlopen: the few calls vigil needs, declared
// here with the ABI NVML documents (nvml.h is not installed on build hosts).
class Nvml {
 public:
  static std::unique_ptr<Nvml> Load(std::string* why) {
    // VIGIL_NVML_LIBRARY names the library where the driver's is not on
    // the loader's path (and lets tests load a stand-in).
    const char* path = std::getenv("VIGIL_NVML_LIBRARY");
    void* lib = ::dlopen(path && *path ? path : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      *why = "NVML not loaded (" + std::string(::dlerror()) + ")";
      return nullptr;
    }
    auto n = std::unique_ptr<Nvml>(new Nvml(lib));
    if (!n->Bind(why)) return nullptr;
    if (int rc = n->init_(); rc != 0) {
      *why = "nvmlInit_v2 failed (" + std::to_string(rc) + ")";
      return nullptr;
    }
    n->initialized_ = true;
    unsigned count = 0;
    if (n->count_(&count) != 0) count = 0;
    for (unsigned i = 0; i < count; ++i) {
      Device d{};
      if (n->handle_(i, &d) != 0) continue;
      n->devices_.push_back(d);
      PciInfo pci{};
      n->bus_ids_.push_back(n->pci_(d, &pci) == 0 ? CanonicalBus(pci.busId) : "");
    }
    // Xid events: every device's critical Xids into one set, polled without waiting.
    if (n->set_create_ && n->register_ && n->set_wait_ && n->set_create_(&n->events_) == 0) {
      for (Device d : n->devices_) n->register_(d, kEventXidCritical, n->events_);
    }
    return n;
  }
  ~Nvml() {
    if (events_ && set_free_) set_free_(events_);
    if (initialized_ && shutdown_) shutdown_();
    ::dlclose(lib_);
  }
  int device_count() const { return static_cast<int>(devices_.size()); }
  const std::string& bus_id(int i) const { return bus_ids_[static_cast<size_t>(i)]; }
  std::optional<uint64_t> UncorrectedEcc(int i) const {
    unsigned long long count = 0;
    // NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC
    if (!ecc_ || ecc_(devices_[static_cast<size_t>(i)], 1, 0, &count) != 0) return std::nullopt;
    return count;
  }
  // (temperature, slowdown threshold) in degrees C.
  std::optional<std::pair<unsigned, unsigned>> Temperature(int i) const {
    unsigned t = 0, slowdown = 0;
    const Device d = devices_[static_cast<size_t>(i)];
    // NVML_TEMPERATURE_GPU; NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    if (!temp_ || !threshold_ || temp_(d, 0, &t) != 0 || threshold_(d, 1, &slowdown) != 0)
      return std::nullopt;
    return std::make_pair(t, slowdown);
  }
  // (device index, Xid) of the critical Xid events since the last call.
  std::vector<std::pair<int, int>> PollXids() const {
    std::vector<std::pair<int, int>> out;
    if (!events_) return out;
    for (int i = 0; i < 64; ++i) {
      EventData e{};
      if (set_wait_(events_, &e, 0) != 0) break;
      int index = -1;
      for (size_t k = 0; k < devices_.size(); ++k) {
        if (devices_[k] == e.device) index = static_cast<int>(k);
      }
      out.emplace_back(index, static_cast<int>(e.eventData));
    }
    return out;
  }

 private:
  using Device = void*;
  using EventSet = void*;
  struct PciInfo {  // nvmlPciInfo_t (v3)
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
  };
  struct EventData {  // nvmlEventData_t, with room to spare
    Device device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
    char reserved[64];
  };
  static constexpr unsigned long long kEventXidCritical = 0x8;  // nvmlEventTypeXidCriticalError

  explicit Nvml(void* lib) : lib_(lib) {}
  template <typename F>
  bool Sym(const char* name, F* f, bool required, std::string* why) {
    *f = reinterpret_cast<F>(::dlsym(lib_, name));
    if (!*f && required) *why = std::string("NVML lacks ") + name;
    return *f || !required;
  }
  bool Bind(std::string* why) {
    return Sym("nvmlInit_v2", &init_, true, why) && Sym("nvmlShutdown", &shutdown_, true, why) &&
           Sym("nvmlDeviceGetCount_v2", &count_, true, why) &&
           Sym("nvmlDeviceGetHandleByIndex_v2", &handle_, true, why) &&
           Sym("nvmlDeviceGetPciInfo_v3", &pci_, true, why) &&
           Sym("nvmlDeviceGetTotalEccErrors", &ecc_, false, why) &&
           Sym("nvmlDeviceGetTemperature", &temp_, false, why) &&
           Sym("nvmlDeviceGetTemperatureThreshold", &threshold_, false, why) &&
           Sym("nvmlEventSetCreate", &set_create_, false, why) &&
           Sym("nvmlEventSetFree", &set_free_, false, why) &&
           Sym("nvmlDeviceRegisterEvents", &register_, false, why) &&
           Sym("nvmlEventSetWait_v2", &set_wait_, false, why);
  }

  void* lib_;
  bool initialized_ = false;
  int (*init_)() = nullptr;
  int (*shutdown_)() = nullptr;
  int (*count_)(unsigned*) = nullptr;
  int (*handle_)(unsigned, Device*) = nullptr;
  int (*pci_)(Device, PciInfo*) = nullptr;
  int (*ecc_)(Device, int, int, unsigned long long*) = nullptr;
  int (*temp_)(Device, int, unsigned*) = nullptr;
  int (*threshold_)(Device, int, unsigned*) = nullptr;
  int (*set_create_)(EventSet*) = nullptr;
  int (*set_free_)(EventSet) = nullptr;
  int (*register_)(Device, unsigned long long, EventSet) = nullptr;
  int (*set_wait_)(EventSet, EventData*, unsigned) = nullptr;
  std::vector<Device> devices_;
  std::vector<std::string> bus_ids_;
  EventSet events_ = nullptr;
};

GpuMonitor::GpuMonitor(const std::string& kernel_log) {
  if (!kernel_log.empty()) {
    auto reader = KernelLogReader::Open(kernel_log);
    if (reader.ok()) {
      kernel_log_ = std::move(reader.value());
    } else {
      kernel_log_error_ = reader.status().message();
    }
  }
  nvml_ = Nvml::Load(&nvml_error_);
  if (nvml_) {
    ecc_seen_.assign(static_cast<size_t>(nvml_->device_count()), 0);
    hot_.assign(static_cast<size_t>(nvml_->device_count()), false);
    for (int i = 0; i < nvml_->device_count(); ++i)
      ecc_seen_[static_cast<size_t>(i)] = nvml_->UncorrectedEcc(i).value_or(0);
  }
}

GpuMonitor::~GpuMonitor() = default;

std::string GpuMonitor::Describe() const {
  std::string out = kernel_log_
                        ? "kernel log " + kernel_log_->path()
                        : "no kernel log (" +
                              (kernel_log_error_.empty() ? "none given" : kernel_log_error_) + ")";
  out += nvml_ ? ", NVML with " + std::to_string(nvml_->device_count()) + " GPU(s)"
               : ", " + nvml_error_;
  return out + ", fault injection";
}

std::string GpuMonitor::BusIdOf(int gpu) const {
  if (nvml_ && gpu >= 0 && gpu < nvml_->device_count() && !nvml_->bus_id(gpu).empty())
    return nvml_->bus_id(gpu);
  // No NVML: a bus id no real device has (domain 0xffff), read back by GpuOfBus.
  char out[32];
  std::snprintf(out, sizeof(out), "ffff:%02x:00", gpu & 0xff);
  return out;
}

std::optional<int> GpuMonitor::GpuOfBus(const std::string& bus) const {
  const std::string canonical = CanonicalBus(bus);
  if (nvml_) {
    for (int i = 0; i < nvml_->device_count(); ++i) {
      if (nvml_->bus_id(i) == canonical) return i;
    }
  }
  unsigned gpu = 0;
  if (std::sscanf(canonical.c_str(), "ffff:%x:00", &gpu) == 1) return static_cast<int>(gpu);
  return std::nullopt;
}

std::vector<GpuReading> GpuMonitor::Readings() const {
  std::vector<GpuReading> out;
  if (!nvml_) return out;
  for (int i = 0; i < nvml_->device_count(); ++i) {
    GpuReading g;
    g.gpu = i;
    const auto t = nvml_->Temperature(i);
    if (t) std::tie(g.temperature_celsius, g.slowdown_celsius) = *t;
    const auto ecc = nvml_->UncorrectedEcc(i);
    if (ecc) g.uncorrected_ecc_errors = *ecc;
    if (t || ecc) out.push_back(g);
  }
  return out;
}

void GpuMonitor::Inject(const std::string& line) { injected_.push_back(line); }

void GpuMonitor::FromLine(const std::string& line, const std::string& source,
                          std::vector<GpuFault>* out) {
  auto x = ParseXidLine(line);
  if (!x) return;
  GpuFault f;
  f.type = "xid";
  f.xid = x->code;
  f.pci_bus_id = x->pci_bus_id;
  f.gpu = GpuOfBus(x->pci_bus_id).value_or(-1);
  f.pid = x->pid;
  f.source = source;
  f.message = "Xid " + std::to_string(x->code) + " on " + x->pci_bus_id + ": " + x->text;
  out->push_back(std::move(f));
}

std::vector<GpuFault> GpuMonitor::Poll() {
  std::vector<GpuFault> out;
  for (const auto& line : injected_) FromLine(line, "injected", &out);
  injected_.clear();
  if (kernel_log_) {
    for (const auto& line : kernel_log_->Poll()) FromLine(line, "kernel-log", &out);
  }
  if (!nvml_) return out;
  // NVML's Xid events repeat what the kernel log says; they are the source
  // only where the kernel log cannot be read (an unprivileged agent).
  for (const auto& [gpu, xid] : nvml_->PollXids()) {
    if (kernel_log_) continue;
    GpuFault f;
    f.type = "xid";
    f.xid = xid;
    f.gpu = gpu;
    f.pci_bus_id = gpu >= 0 ? nvml_->bus_id(gpu) : "";
    f.source = "nvml";
    f.message = "Xid " + std::to_string(xid) + " on GPU " + std::to_string(gpu);
    out.push_back(std::move(f));
  }
  for (int i = 0; i < nvml_->device_count(); ++i) {
    const auto idx = static_cast<size_t>(i);
    if (auto ecc = nvml_->UncorrectedEcc(i); ecc && *ecc > ecc_seen_[idx]) {
      GpuFault f;
      f.type = "ecc";
      f.gpu = i;
      f.pci_bus_id = nvml_->bus_id(i);
      f.source = "nvml";
      f.message = std::to_string(*ecc - ecc_seen_[idx]) + " new uncorrectable ECC error(s), " +
                  std::to_string(*ecc) + " since the driver loaded";
      ecc_seen_[idx] = *ecc;
      out.push_back(std::move(f));
    }
    if (auto t = nvml_->Temperature(i)) {
      const bool hot = t->second > 0 && t->first >= t->second;
      if (hot && !hot_[idx]) {
        GpuFault f;
        f.type = "thermal";
        f.gpu = i;
        f.pci_bus_id = nvml_->bus_id(i);
        f.source = "nvml";
        f.message = "GPU at " + std::to_string(t->first) + " C, at or past its slowdown " +
                    std::to_string(t->second) + " C";
        out.push_back(std::move(f));
      }
      hot_[idx] = hot;
    }
  }
  return out;
}

}  // namespace vigil::agent
