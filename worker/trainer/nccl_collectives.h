// Collectives over NCCL, on device memory, for ranks that each drive one
// GPU. Bootstrapped through the same store as Gloo (vigild's): rank 0
// publishes an ncclUniqueId under `key`, the others read it.
//
// ReduceScatterSum and Allgather run the same rings as GlooCollectives (a
// fixed summation order per world size, uneven chunks allowed), built from
// grouped ncclSend/ncclRecv and an add kernel; AllToAll is grouped
// send/recv. Everything is enqueued on the default stream, so it is ordered
// with the kernels around it. Errors throw std::runtime_error.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <gloo/rendezvous/store.h>

#include "worker/trainer/collectives.h"

namespace vigil::trainer {

class NcclCollectives : public Collectives {
 public:
  // Selects GPU `device` for this process, then joins the communicator.
  NcclCollectives(gloo::rendezvous::Store& store, const std::string& key, int rank, int world,
                  int device);
  ~NcclCollectives() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  bool device_memory() const override { return true; }
  void ReduceScatterSum(float* data, const std::vector<int64_t>& offsets) override;
  void Allgather(float* data, const std::vector<int64_t>& offsets) override;
  void AllgatherBytes(const void* mine, size_t bytes, void* all) override;
  void AllToAll(const float* send, float* recv, int64_t block_floats) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0, world_ = 1;
};

}  // namespace vigil::trainer
