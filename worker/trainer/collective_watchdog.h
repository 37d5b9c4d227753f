// Bounds how long a collective may take where collectives run
// asynchronously (NCCL kernels on a GPU stream): the calling thread only
// enqueues, and when a peer is gone it later blocks in a copy or a
// synchronize that never returns. Gloo bounds its own waits (a context
// timeout); NCCL does not, so a rank could wait forever. This watchdog
// is what makes it report and exit instead.
//
// Each collective is Watch()ed with a probe that says whether it is still
// pending, done, or failed (a CUDA event's query and the communicator's
// asynchronous error). A thread polls the oldest pending collective every
// `period`; once one fails, or stays pending past `timeout`, `on_expiry`
// runs once on that thread with what happened (NcclCollectives aborts the
// communicator there, and vigil-train exits 3: a collective error).
// Collectives complete in the order they were enqueued (one stream), so
// only the oldest is timed.
//
// Thread-safe: Watch() from the training thread, the rest on the watchdog's
// own. The destructor stops the thread promptly (within one period).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace vigil::trainer {

class CollectiveWatchdog {
 public:
  enum class State { kPending, kDone, kFailed };
  // Sets *error when it answers kFailed. Runs on the watchdog thread.
  using Probe = std::function<State(std::string* error)>;
  using Expiry = std::function<void(const std::string& what)>;

  CollectiveWatchdog(std::chrono::milliseconds timeout, std::chrono::milliseconds period,
                     Expiry on_expiry, std::function<void()> thread_setup = nullptr);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // `what` names the collective in the expiry message ("allreduce #12").
  void Watch(std::string what, Probe probe);
  // Collectives not yet seen done.
  size_t pending() const;
  bool expired() const;

 private:
  struct Op {
    std::string what;
    Probe probe;
    std::chrono::steady_clock::time_point since;
  };
  void Run(std::function<void()> thread_setup);

  const std::chrono::milliseconds timeout_, period_;
  const Expiry on_expiry_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Op> ops_;
  bool stop_ = false, expired_ = false;
  std::thread thread_;
};

}  // namespace vigil::trainer
