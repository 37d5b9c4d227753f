#include "worker/trainer/collective_watchdog.h"

namespace vigil::trainer {

CollectiveWatchdog::CollectiveWatchdog(std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds period, Expiry on_expiry,
                                       std::function<void()> thread_setup)
    : timeout_(timeout), period_(period), on_expiry_(std::move(on_expiry)) {
  thread_ = std::thread([this, setup = std::move(thread_setup)] { Run(setup); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CollectiveWatchdog::Watch(std::string what, Probe probe) {
  std::lock_guard<std::mutex> lock(mu_);
  ops_.push_back({std::move(what), std::move(probe), std::chrono::steady_clock::now()});
}

size_t CollectiveWatchdog::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_.size();
}

bool CollectiveWatchdog::expired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return expired_;
}

void CollectiveWatchdog::Run(std::function<void()> thread_setup) {
  if (thread_setup) thread_setup();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_ && !expired_) {
    wake_.wait_for(lock, period_, [this] { return stop_; });
    if (stop_) break;
    // Probes run without the lock: Watch() must never wait on a CUDA query.
    while (!ops_.empty()) {
      Op& oldest = ops_.front();
      Probe probe = oldest.probe;
      const std::string what = oldest.what;
      const auto since = oldest.since;
      lock.unlock();
      std::string error;
      const State state = probe(&error);
      const auto waited = std::chrono::steady_clock::now() - since;
      lock.lock();
      if (state == State::kDone) {
        ops_.pop_front();  // only this thread pops: `oldest` is still the front
        continue;
      }
      std::string why;
      if (state == State::kFailed) {
        why = what + " failed: " + error;
      } else if (waited > timeout_) {
        why =
            what + " not complete after " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()) +
            " ms (limits.collective_timeout_ms " + std::to_string(timeout_.count()) + ")";
      }
      if (!why.empty()) {
        expired_ = true;
        lock.unlock();
        on_expiry_(why);
        lock.lock();
      }
      break;
    }
  }
}

}  // namespace vigil::trainer
