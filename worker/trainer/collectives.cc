#include "worker/trainer/collectives.h"

#include <algorithm>
#include <cstring>

#include <gloo/allgather.h>
#include <gloo/alltoall.h>
#include <gloo/common/error.h>
#include <gloo/context.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>
#include <gloo/transport/unbound_buffer.h>
#include <gloo/types.h>

#include "common/partition.h"
#include "common/util.h"

namespace vigil::trainer {
namespace {

// Slot prefixes of vigil's own ring algorithms, clear of Gloo's (0x01-0x08).
constexpr uint8_t kReduceScatterPrefix = 0x41;
constexpr uint8_t kAllgatherPrefix = 0x42;

int Mod(int a, int w) { return ((a % w) + w) % w; }

}  // namespace

std::shared_ptr<gloo::Context> ConnectTcpMesh(gloo::rendezvous::Store& store, int rank, int world,
                                              const std::string& host,
                                              std::chrono::milliseconds timeout) {
  gloo::transport::tcp::attr attr;
  attr.hostname = host;
  auto device = gloo::transport::tcp::CreateDevice(attr);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, world);
  context->setTimeout(timeout);
  context->connectFullMesh(store, device);
  return context;
}

GlooCollectives::GlooCollectives() = default;

GlooCollectives::GlooCollectives(std::shared_ptr<gloo::Context> context)
    : context_(std::move(context)), rank_(context_->rank), world_(context_->size) {}

GlooCollectives::~GlooCollectives() = default;

void GlooCollectives::Wait(bool recv_ok, bool send_ok, const char* what) const {
  if (!recv_ok || !send_ok) throw gloo::IoException(std::string(what) + " aborted");
}

void GlooCollectives::ReduceScatterSum(float* data, const std::vector<int64_t>& off) {
  if (world_ == 1) return;
  ScopedSeconds timed(&seconds_in_collectives_);
  const int W = world_, r = rank_;
  int64_t longest = 0;
  for (int c = 0; c < W; ++c) longest = std::max(longest, off[c + 1] - off[c]);
  scratch_.resize(std::max<int64_t>(longest, 1));
  auto buf = context_->createUnboundBuffer(data, static_cast<size_t>(off[W]) * sizeof(float));
  auto tmp = context_->createUnboundBuffer(scratch_.data(), scratch_.size() * sizeof(float));
  const uint64_t slot = gloo::Slot::build(kReduceScatterPrefix, 0);
  const auto timeout = context_->getTimeout();
  const int right = Mod(r + 1, W), left = Mod(r - 1, W);
  // Step s: pass chunk r-s-1 on to the right, take chunk r-s-2 from the left
  // and add this rank's values. Chunk c starts at rank c+1 and ends, complete,
  // at rank c: ((g[c+1] + g[c+2]) + ...) + g[c], the same order every run.
  for (int s = 0; s < W - 1; ++s) {
    const int send_c = Mod(r - s - 1, W), recv_c = Mod(r - s - 2, W);
    const int64_t send_n = off[send_c + 1] - off[send_c];
    const int64_t recv_n = off[recv_c + 1] - off[recv_c];
    if (send_n > 0) buf->send(right, slot, off[send_c] * sizeof(float), send_n * sizeof(float));
    if (recv_n > 0) tmp->recv(left, slot, 0, recv_n * sizeof(float));
    const bool recv_ok = recv_n > 0 ? tmp->waitRecv(timeout) : true;
    const bool send_ok = send_n > 0 ? buf->waitSend(timeout) : true;
    Wait(recv_ok, send_ok, "reduce-scatter");
    float* dst = data + off[recv_c];
    for (int64_t i = 0; i < recv_n; ++i) dst[i] += scratch_[i];
  }
}

void GlooCollectives::Allgather(float* data, const std::vector<int64_t>& off) {
  if (world_ == 1) return;
  ScopedSeconds timed(&seconds_in_collectives_);
  const int W = world_, r = rank_;
  auto buf = context_->createUnboundBuffer(data, static_cast<size_t>(off[W]) * sizeof(float));
  const uint64_t slot = gloo::Slot::build(kAllgatherPrefix, 0);
  const auto timeout = context_->getTimeout();
  const int right = Mod(r + 1, W), left = Mod(r - 1, W);
  for (int s = 0; s < W - 1; ++s) {
    const int send_c = Mod(r - s, W), recv_c = Mod(r - s - 1, W);
    const int64_t send_n = off[send_c + 1] - off[send_c];
    const int64_t recv_n = off[recv_c + 1] - off[recv_c];
    if (send_n > 0) buf->send(right, slot, off[send_c] * sizeof(float), send_n * sizeof(float));
    if (recv_n > 0) buf->recv(left, slot, off[recv_c] * sizeof(float), recv_n * sizeof(float));
    const bool recv_ok = recv_n > 0 ? buf->waitRecv(timeout) : true;
    const bool send_ok = send_n > 0 ? buf->waitSend(timeout) : true;
    Wait(recv_ok, send_ok, "allgather");
  }
}

void Collectives::Barrier() {
  const char mine = 1;
  std::vector<char> all(world());
  AllgatherBytes(&mine, 1, all.data());
}

void Collectives::AllreduceSum(float* data, int64_t n) {
  if (world() == 1) return;
  const auto off = BalancedOffsets(n, world());
  ReduceScatterSum(data, off);
  Allgather(data, off);
}

void GlooCollectives::AllgatherBytes(const void* mine, size_t bytes, void* all) {
  if (world_ == 1) {
    std::memcpy(all, mine, bytes);
    return;
  }
  ScopedSeconds timed(&seconds_in_collectives_);
  gloo::AllgatherOptions opts(context_);
  opts.setInput(const_cast<char*>(static_cast<const char*>(mine)), bytes);
  opts.setOutput(static_cast<char*>(all), bytes * world_);
  gloo::allgather(opts);
}

void GlooCollectives::AllToAll(const float* send, float* recv, int64_t block_floats) {
  const size_t n = static_cast<size_t>(block_floats) * world_;
  if (world_ == 1) {
    std::memcpy(recv, send, n * sizeof(float));
    return;
  }
  ScopedSeconds timed(&seconds_in_collectives_);
  gloo::AlltoallOptions opts(context_);
  opts.setInput(const_cast<float*>(send), n);
  opts.setOutput(recv, n);
  gloo::alltoall(opts);
}

}  // namespace vigil::trainer
