// The agent's GPU fault path without a GPU: Xid lines as the kernel writes
// them (to /dev/kmsg, or as dmesg shows them) are parsed, a kernel log
// written to after the monitor opened it is followed, and each fault is
// mapped to the local GPU its bus id names.
#include "worker/agent/gpu_monitor.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <map>

#include "tests/unit/test_util.h"

namespace vigil::agent {
namespace {

TEST(Xid, ParsesKmsgRecordsDmesgLinesAndBareMessages) {
  auto kmsg = ParseXidLine(
      "3,1532,907514839,-;NVRM: Xid (PCI:0000:3b:00): 79, pid=4153, name=python3, GPU has "
      "fallen off the bus.\n");
  ASSERT_TRUE(kmsg);
  EXPECT_EQ(kmsg->code, 79);
  EXPECT_EQ(kmsg->pci_bus_id, "0000:3b:00");
  ASSERT_TRUE(kmsg->pid);
  EXPECT_EQ(*kmsg->pid, 4153);
  EXPECT_EQ(kmsg->text, "pid=4153, name=python3, GPU has fallen off the bus.");

  // Newer drivers: an unknown pid, and NVML's spelling of the bus id.
  auto dmesg = ParseXidLine(
      "[ 8124.551870] NVRM: Xid (PCI:00000000:B3:00.0): 48, pid='<unknown>', name=<unknown>, "
      "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer");
  ASSERT_TRUE(dmesg);
  EXPECT_EQ(dmesg->code, 48);
  EXPECT_EQ(dmesg->pci_bus_id, "0000:b3:00") << "one spelling for the kernel's and NVML's ids";
  EXPECT_FALSE(dmesg->pid);

  EXPECT_FALSE(ParseXidLine("NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.15"));
  EXPECT_FALSE(ParseXidLine("usb 1-1: new high-speed USB device number 2 using xhci_hcd"));
  EXPECT_FALSE(ParseXidLine("NVRM: Xid (PCI:0000:3b:00): many, pid=1"));
}

TEST(Xid, CataloguesTheCodesTrainingMeets) {
  for (int code : {13, 31, 43, 48, 63, 64, 74, 79, 92, 94, 95}) {
    const XidInfo* info = LookupXid(code);
    ASSERT_NE(info, nullptr) << code;
    EXPECT_GT(std::string(info->name).size(), 5u);
  }
  EXPECT_STREQ(LookupXid(79)->remedy, "replace");
  EXPECT_STREQ(LookupXid(94)->remedy, "restart");
  EXPECT_STREQ(LookupXid(92)->remedy, "watch");
  EXPECT_EQ(LookupXid(1), nullptr);
}

TEST(KernelLog, FollowsAFileFromWhereItWasOpened) {
  testing::TempDir dir;
  const std::string path = dir / "kern.log";
  std::ofstream(path) << "old line, before the agent started\n";
  auto reader = KernelLogReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_TRUE(reader.value()->Poll().empty()) << "what was logged before is not news";
  {
    std::ofstream out(path, std::ios::app);
    out << "first\nsecond\npart";
  }
  EXPECT_EQ(reader.value()->Poll(), (std::vector<std::string>{"first", "second"}));
  std::ofstream(path, std::ios::app) << "ial\n";
  EXPECT_EQ(reader.value()->Poll(), (std::vector<std::string>{"partial"}))
      << "a line is read once it is whole";
  EXPECT_FALSE(KernelLogReader::Open(dir / "missing").ok());
}

TEST(GpuMonitor, ReportsXidsFromTheKernelLogAndFromInjection) {
  testing::TempDir dir;
  const std::string path = dir / "kmsg";
  std::ofstream(path) << "";
  GpuMonitor monitor(path);
  EXPECT_NE(monitor.Describe().find("kernel log " + path), std::string::npos) << monitor.Describe();
  EXPECT_TRUE(monitor.Poll().empty());

  // On a host without NVML, GPU i has a made-up bus id that maps back to i.
  const std::string bus = monitor.BusIdOf(2);
  ASSERT_TRUE(monitor.GpuOfBus(bus));
  EXPECT_EQ(*monitor.GpuOfBus(bus), 2);
  std::ofstream(path, std::ios::app)
      << "6,200,100,-;NVRM: GPU at PCI:" << bus << ": GPU-1234\n"
      << "4,201,101,-;NVRM: Xid (PCI:" << bus << "): 94, pid=777, name=vigil-train, "
      << "Contained: SM (0x1). RST: No, D-RST: No\n";
  auto faults = monitor.Poll();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].type, "xid");
  EXPECT_EQ(faults[0].xid, 94);
  EXPECT_EQ(faults[0].gpu, 2);
  EXPECT_EQ(faults[0].source, "kernel-log");
  ASSERT_TRUE(faults[0].pid);
  EXPECT_EQ(*faults[0].pid, 777);

  monitor.Inject("NVRM: Xid (PCI:" + monitor.BusIdOf(1) + "): 79, pid='<unknown>', x.");
  faults = monitor.Poll();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].xid, 79);
  EXPECT_EQ(faults[0].gpu, 1);
  EXPECT_EQ(faults[0].source, "injected");
  EXPECT_TRUE(monitor.Poll().empty()) << "each fault is reported once";
}

TEST(GpuMonitor, RunsWithoutAKernelLog) {
  GpuMonitor monitor("/nonexistent/kmsg");
  EXPECT_NE(monitor.Describe().find("no kernel log"), std::string::npos) << monitor.Describe();
  EXPECT_TRUE(monitor.Poll().empty());
}

// NVML through the driver's ABI: a stand-in libnvidia-ml.so.1
// (tests/fake_nvml) loaded by dlopen as the real one is, answering from a
// state file this test rewrites. Readings for the heartbeat; an
// uncorrectable ECC count rising, a GPU at its slowdown temperature and a
// critical Xid event each reported once.
TEST(GpuMonitor, ReadsNvmlThroughTheDriversAbi) {
  testing::TempDir dir;
  const std::string state = dir / "nvml-state";
  auto write = [&](const std::string& text) { std::ofstream(state, std::ios::trunc) << text; };
  // temperature, slowdown, uncorrected ECC, Xid events so far, last Xid
  write("55 87 0 0 0\n61 87 2 0 0\n");
  ::setenv("VIGIL_NVML_LIBRARY", VIGIL_FAKE_NVML, 1);
  ::setenv("VIGIL_FAKE_NVML_STATE", state.c_str(), 1);
  GpuMonitor monitor("");
  ::unsetenv("VIGIL_NVML_LIBRARY");
  EXPECT_NE(monitor.Describe().find("NVML with 2 GPU(s)"), std::string::npos) << monitor.Describe();
  EXPECT_EQ(monitor.BusIdOf(1), "0000:11:00");
  auto readings = monitor.Readings();
  ASSERT_EQ(readings.size(), 2u);
  EXPECT_EQ(readings[1].gpu, 1);
  EXPECT_EQ(readings[1].temperature_celsius, 61u);
  EXPECT_EQ(readings[1].slowdown_celsius, 87u);
  EXPECT_EQ(readings[1].uncorrected_ecc_errors, 2u);
  EXPECT_TRUE(monitor.Poll().empty()) << "errors counted before the agent started are not news";

  // GPU 0 reaches its slowdown point; GPU 1 gains an uncorrectable error and an Xid 79.
  write("87 87 0 0 0\n61 87 3 1 79\n");
  auto faults = monitor.Poll();
  std::map<std::string, GpuFault> by_type;
  for (const auto& f : faults) by_type[f.type] = f;
  ASSERT_EQ(faults.size(), 3u);
  EXPECT_EQ(by_type["thermal"].gpu, 0);
  EXPECT_NE(by_type["thermal"].message.find("87 C"), std::string::npos)
      << by_type["thermal"].message;
  EXPECT_EQ(by_type["ecc"].gpu, 1);
  EXPECT_NE(by_type["ecc"].message.find("1 new uncorrectable"), std::string::npos);
  EXPECT_EQ(by_type["xid"].gpu, 1);
  EXPECT_EQ(by_type["xid"].xid, 79);
  EXPECT_EQ(by_type["xid"].source, "nvml");
  EXPECT_EQ(by_type["xid"].pci_bus_id, "0000:11:00");
  EXPECT_TRUE(monitor.Poll().empty()) << "each reported once";

  // Cooled down and hot again: a new thermal fault.
  write("60 87 0 0 0\n61 87 3 1 79\n");
  EXPECT_TRUE(monitor.Poll().empty());
  write("90 87 0 0 0\n61 87 3 1 79\n");
  faults = monitor.Poll();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].type, "thermal");
  ::unsetenv("VIGIL_FAKE_NVML_STATE");
}

}  // namespace
}  // namespace vigil::agent
