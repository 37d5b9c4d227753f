// Collectives among one generation's ranks, over a Gloo context (TCP).
//
// Every method is collective: all ranks call it in the same order with the
// same sizes. Reductions run as a ring whose summation order is fixed by the
// world size alone, so the same inputs give the same bits run after run, and
// a reduce-scatter followed by an allgather gives exactly what an allreduce
// gives (ZeRO and plain data parallelism agree bit for bit).
//
// Failures (a peer lost, a timeout) throw gloo::IoException or
// gloo::EnforceNotMet; the trainer turns them into exit code 3. Not
// thread-safe: one caller at a time.
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
  // A single rank: every collective is the identity.
  Collectives();
  explicit Collectives(std::shared_ptr<gloo::Context> context);
  ~Collectives() override;

  int rank() const override { return rank_; }
  int world() const override { return world_; }

  // In place over data[0, offsets[world]): afterwards rank r holds, in
  // [offsets[r], offsets[r + 1]), the sum over all ranks of that chunk. The
  // other chunks hold partial sums (garbage to the caller).
  void ReduceScatterSum(float* data, const std::vector<int64_t>& offsets);
  // In place: chunk r of rank r is copied to every rank.
  void Allgather(float* data, const std::vector<int64_t>& offsets);
  // Sum over ranks, in place (a reduce-scatter and an allgather over
  // balanced chunks).
  void AllreduceSum(float* data, int64_t n);
  // Gathers `bytes` from every rank into all[rank * bytes].
  void AllgatherBytes(const void* mine, size_t bytes, void* all);
  void AllToAll(const float* send, float* recv, int64_t block_floats) override;
  void Barrier();

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
