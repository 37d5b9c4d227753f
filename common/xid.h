// NVIDIA's Xid catalogue (docs.nvidia.com/deploy/xid-errors), for the codes
// a training job meets: the agent names what it reads from the kernel log,
// vigild records the name and the usual remedy beside the event.
#pragma once

namespace vigil {

struct XidInfo {
  int code;
  const char* name;
  // What it usually takes: "restart" (the application's state is lost, the
  // GPU is fine), "reset" (reset the GPU, or reboot the host), "replace"
  // (hardware: take the GPU or host out of service), "watch" (a warning).
  const char* remedy;
};

inline constexpr XidInfo kXids[] = {
    {13, "graphics engine exception", "restart"},
    {31, "GPU memory page fault", "restart"},
    {43, "GPU stopped processing", "restart"},
    {45, "preemptive cleanup after a previous error", "restart"},
    {48, "double-bit ECC error", "replace"},
    {61, "internal micro-controller breakpoint", "reset"},
    {62, "internal micro-controller halt", "reset"},
    {63, "ECC page retirement or row remapping recorded", "watch"},
    {64, "ECC page retirement or row remapping failure", "replace"},
    {74, "NVLink error", "reset"},
    {79, "GPU has fallen off the bus", "replace"},
    {92, "high single-bit ECC error rate", "watch"},
    {94, "contained ECC error", "restart"},
    {95, "uncontained ECC error", "reset"},
    {119, "GSP RPC timeout", "reset"},
    {120, "GSP error", "reset"},
};

// nullptr for a code outside the table.
inline const XidInfo* LookupXid(int code) {
  for (const auto& x : kXids) {
    if (x.code == code) return &x;
  }
  return nullptr;
}

}  // namespace vigil
