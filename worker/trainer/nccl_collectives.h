// Collectives over NCCL, on device memory, for ranks that each drive one
// GPU. Bootstrapped through the same store as Gloo (vigild's): rank 0
// publishes an ncclUniqueId under `key`, the others read it.
//
// ReduceScatterSum and Allgather run the same rings as GlooCollectives (a
// fixed summation order per world size, uneven chunks allowed), built from
// grouped ncclSend/ncclRecv and an add kernel; AllToAll is grouped
// send/recv. Everything is enqueued on the default stream, so it is ordered
// with the kernels around it. Errors throw std::runtime_error.
//
// Never waits forever: a CollectiveWatchdog follows every collective (and
// the communicator's creation). One that fails asynchronously, or is not
// complete after `timeout`, aborts the communicator (which releases the
// kernels and copies stuck behind it) and calls `on_failure` on the
// watchdog's thread; vigil-train logs there and exits 3.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <gloo/rendezvous/store.h>

#include "worker/trainer/collective_watchdog.h"
#include "worker/trainer/collectives.h"

namespace vigil::trainer {

class NcclCollectives : public Collectives {
 public:
  // Selects GPU `device` for this process, then joins the communicator.
  NcclCollectives(gloo::rendezvous::Store& store, const std::string& key, int rank, int world,
                  int device, std::chrono::milliseconds timeout,
                  std::function<void(const std::string&)> on_failure);
  ~NcclCollectives() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  bool device_memory() const override { return true; }
  void ReduceScatterSum(float* data, const std::vector<int64_t>& offsets) override;
  void Allgather(float* data, const std::vector<int64_t>& offsets) override;
  void AllgatherBytes(const void* mine, size_t bytes, void* all) override;
  void AllToAll(const float* send, float* recv, int64_t block_floats) override;

 private:
  // Hands the collective just enqueued to the watchdog.
  void Watch(const char* what);

  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0, world_ = 1;
  uint64_t enqueued_ = 0;
  std::unique_ptr<CollectiveWatchdog> watchdog_;  // declared last: stopped first
};

}  // namespace vigil::trainer
