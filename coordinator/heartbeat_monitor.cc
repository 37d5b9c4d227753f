#include "coordinator/heartbeat_monitor.h"

namespace vigil::coordinator {

size_t HeartbeatMonitor::QuietFor(int64_t quiet_us, int64_t now_us) const {
  size_t n = 0;
  for (const auto& [agent, last] : last_) n += now_us - last >= quiet_us ? 1 : 0;
  return n;
}

std::vector<int> HeartbeatMonitor::Silent(int64_t now_us) {
  std::vector<int> silent;
  for (auto it = last_.begin(); it != last_.end();) {
    if (now_us - it->second > timeout_us_) {
      silent.push_back(it->first);
      it = last_.erase(it);
    } else {
      ++it;
    }
  }
  return silent;
}

}  // namespace vigil::coordinator
