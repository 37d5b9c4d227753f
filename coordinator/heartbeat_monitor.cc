#include "coordinator/heartbeat_monitor.h"

namespace vigil::coordinator {

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
