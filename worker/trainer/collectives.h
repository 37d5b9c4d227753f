// Collectives among one generation's ranks: an interface with a Gloo (TCP,
// host memory) implementation here and an NCCL (device memory) one in
// nccl_collectives.h.
//
// Every method is collective: all ranks call it in the same order with the
// same sizes. Reductions run as a ring whose summation order is fixed by the
// world size alone, so the same inputs give the same bits run after run, and
// a reduce-scatter followed by an allgather gives exactly what an allreduce
// gives (ZeRO and plain data parallelism agree bit for bit).
//
// Failures (a peer lost, a timeout) throw (gloo::IoException,
// gloo::EnforceNotMet, std::runtime_error); the trainer turns them into exit
// code 3. Not thread-safe: one caller at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "worker/trainer/expert_exchange.h"

namespace gloo {
class Context;
namespace rendezvous {
class Store;
}
}  // namespace gloo

namespace vigil::trainer {

class Collectives : public ExpertExchange {
 public:
  // Where the float buffers of ReduceScatterSum, Allgather, AllreduceSum and
  // AllToAll live: host memory (Gloo) or device memory (NCCL).
  virtual bool device_memory() const = 0;

  // In place over data[0, offsets[world]): afterwards rank r holds, in
  // [offsets[r], offsets[r + 1]), the sum over all ranks of that chunk. The
  // other chunks hold partial sums (garbage to the caller).
  virtual void ReduceScatterSum(float* data, const std::vector<int64_t>& offsets) = 0;
  // In place: chunk r of rank r is copied to every rank.
  virtual void Allgather(float* data, const std::vector<int64_t>& offsets) = 0;
  // Sum over ranks, in place (a reduce-scatter and an allgather over
  // balanced chunks).
  void AllreduceSum(float* data, int64_t n);
  // Gathers `bytes` of host memory from every rank into all[rank * bytes]
  // (host memory whatever the backend).
  virtual void AllgatherBytes(const void* mine, size_t bytes, void* all) = 0;
  // Returns once every rank has called it.
  void Barrier();
  // Wall time spent in collectives so far, waiting for peers included; 0
  // where the backend cannot tell (NCCL runs them on a stream). A rank's step
  // time less this is its compute time: a straggler's is longer than its
  // peers', who wait for it inside the collectives.
  double seconds_in_collectives() const { return seconds_in_collectives_; }

 protected:
  double seconds_in_collectives_ = 0.0;
};

// vigil's rings over a Gloo context (TCP), on host memory. A default-made
// one is a world of one rank, where every collective is the identity.
class GlooCollectives : public Collectives {
 public:
  GlooCollectives();
  explicit GlooCollectives(std::shared_ptr<gloo::Context> context);
  ~GlooCollectives() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  bool device_memory() const override { return false; }
  void ReduceScatterSum(float* data, const std::vector<int64_t>& offsets) override;
  void Allgather(float* data, const std::vector<int64_t>& offsets) override;
  void AllgatherBytes(const void* mine, size_t bytes, void* all) override;
  void AllToAll(const float* send, float* recv, int64_t block_floats) override;

 private:
  void Wait(bool recv_ok, bool send_ok, const char* what) const;

  std::shared_ptr<gloo::Context> context_;
  int rank_ = 0, world_ = 1;
  std::vector<float> scratch_;
};

// Joins rank `rank` of `world` to a full mesh of Gloo TCP pairs, bound to
// `host`, rendezvousing through `store`. Waits (and later collectives time
// out) after `timeout`; throws gloo::IoException on failure.
std::shared_ptr<gloo::Context> ConnectTcpMesh(gloo::rendezvous::Store& store, int rank, int world,
                                              const std::string& host,
                                              std::chrono::milliseconds timeout);

}  // namespace vigil::trainer
