#include "coordinator/heartbeat_monitor.h"

#include <algorithm>

namespace vigil::coordinator {

void HeartbeatMonitor::Beat(int agent, int64_t now_us) {
  auto found = index_.find(agent);
  std::list<Heard>::iterator node;
  if (found == index_.end()) {
    node = by_time_.insert(by_time_.end(), {agent, now_us});
    index_.emplace(agent, node);
  } else {
    node = found->second;
    node->at_us = now_us;
    by_time_.splice(by_time_.end(), by_time_, node);
  }
  // Times passed in only grow, in vigild: its place is the end. Where they
  // went backwards (a test's clock), it moves back to its place.
  while (node != by_time_.begin() && std::prev(node)->at_us > now_us)
    by_time_.splice(std::prev(node), by_time_, node);
}

void HeartbeatMonitor::Forget(int agent) {
  auto it = index_.find(agent);
  if (it == index_.end()) return;
  by_time_.erase(it->second);
  index_.erase(it);
}

size_t HeartbeatMonitor::QuietFor(int64_t quiet_us, int64_t now_us) const {
  size_t n = 0;
  for (auto it = by_time_.begin(); it != by_time_.end() && now_us - it->at_us >= quiet_us; ++it)
    ++n;
  return n;
}

std::vector<int> HeartbeatMonitor::Silent(int64_t now_us) {
  std::vector<int> silent;
  while (!by_time_.empty() && now_us - by_time_.front().at_us > timeout_us_) {
    silent.push_back(by_time_.front().agent);
    index_.erase(by_time_.front().agent);
    by_time_.pop_front();
  }
  std::sort(silent.begin(), silent.end());
  return silent;
}

}  // namespace vigil::coordinator
