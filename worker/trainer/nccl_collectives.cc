#include "worker/trainer/nccl_collectives.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "kernels/cuda/device_vector.h"
#include "kernels/cuda/residual.h"

namespace vigil::trainer {
namespace {

void Check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string(what) + ": " + ncclGetErrorString(r));
}

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

int Mod(int a, int w) { return ((a % w) + w) % w; }

// One ring step: send_n floats to the right while receiving recv_n from the left.
void RingStep(const float* send, int64_t send_n, int right, float* recv, int64_t recv_n, int left,
              ncclComm_t comm) {
  Check(ncclGroupStart(), "ncclGroupStart");
  if (send_n > 0) Check(ncclSend(send, send_n, ncclFloat, right, comm, nullptr), "ncclSend");
  if (recv_n > 0) Check(ncclRecv(recv, recv_n, ncclFloat, left, comm, nullptr), "ncclRecv");
  Check(ncclGroupEnd(), "ncclGroupEnd");
}

}  // namespace

struct NcclCollectives::State {
  ncclComm_t comm = nullptr;
  std::atomic<ncclComm_t> live{nullptr};  // set once created; cleared by the abort
  std::atomic<bool> aborted{false};
  kernels::cuda::DeviceVector<float> scratch;
  kernels::cuda::DeviceVector<char> bytes;
};

NcclCollectives::NcclCollectives(gloo::rendezvous::Store& store, const std::string& key, int rank,
                                 int world, int device, std::chrono::milliseconds timeout,
                                 std::function<void(const std::string&)> on_failure)
    : state_(std::make_unique<State>()), rank_(rank), world_(world) {
  Check(cudaSetDevice(device), "cudaSetDevice");
  State* state = state_.get();
  watchdog_ = std::make_unique<CollectiveWatchdog>(
      timeout, std::chrono::milliseconds(100),
      [state, on_failure = std::move(on_failure)](const std::string& why) {
        // Kernels spinning on a dead peer end with the communicator.
        if (ncclComm_t comm = state->live.exchange(nullptr)) {
          state->aborted = true;
          ncclCommAbort(comm);
        }
        on_failure(why);
      },
      [device] { cudaSetDevice(device); });
  // Joining waits for every peer: bounded like a collective.
  auto joined = std::make_shared<std::atomic<bool>>(false);
  watchdog_->Watch("joining the NCCL communicator", [joined](std::string*) {
    return *joined ? CollectiveWatchdog::State::kDone : CollectiveWatchdog::State::kPending;
  });
  ncclUniqueId id;
  if (rank == 0) {
    Check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    store.set(key, std::vector<char>(id.internal, id.internal + sizeof(id.internal)));
  } else {
    store.wait({key});
    const auto v = store.get(key);
    if (v.size() != sizeof(id.internal)) throw std::runtime_error("malformed NCCL id in the store");
    std::memcpy(id.internal, v.data(), v.size());
  }
  Check(ncclCommInitRank(&state_->comm, world, id, rank), "ncclCommInitRank");
  state_->live = state_->comm;
  *joined = true;
}

NcclCollectives::~NcclCollectives() {
  watchdog_.reset();
  if (state_ && state_->comm && !state_->aborted) ncclCommDestroy(state_->comm);
}

void NcclCollectives::Watch(const char* what) {
  cudaEvent_t raw = nullptr;
  Check(cudaEventCreateWithFlags(&raw, cudaEventDisableTiming), "cudaEventCreate");
  std::shared_ptr<std::remove_pointer_t<cudaEvent_t>> done(
      raw, [](cudaEvent_t e) { cudaEventDestroy(e); });
  Check(cudaEventRecord(raw, nullptr), "cudaEventRecord");
  ncclComm_t comm = state_->comm;
  watchdog_->Watch(std::string(what) + " #" + std::to_string(++enqueued_),
                   [done, comm](std::string* error) {
                     const cudaError_t q = cudaEventQuery(done.get());
                     if (q == cudaSuccess) return CollectiveWatchdog::State::kDone;
                     if (q != cudaErrorNotReady) {
                       *error = cudaGetErrorString(q);
                       return CollectiveWatchdog::State::kFailed;
                     }
                     // A peer's failure surfaces here while the kernels still wait.
                     ncclResult_t async = ncclSuccess;
                     if (ncclCommGetAsyncError(comm, &async) == ncclSuccess &&
                         async != ncclSuccess && async != ncclInProgress) {
                       *error = std::string("NCCL: ") + ncclGetErrorString(async);
                       return CollectiveWatchdog::State::kFailed;
                     }
                     return CollectiveWatchdog::State::kPending;
                   });
}

void NcclCollectives::ReduceScatterSum(float* data, const std::vector<int64_t>& off) {
  if (world_ == 1) return;
  const int W = world_, r = rank_, right = Mod(r + 1, W), left = Mod(r - 1, W);
  int64_t longest = 1;
  for (int c = 0; c < W; ++c) longest = std::max(longest, off[c + 1] - off[c]);
  if (state_->scratch.size() < static_cast<size_t>(longest))
    state_->scratch.assign(static_cast<size_t>(longest), 0.0f);
  float* tmp = state_->scratch.data();
  // The ring of GlooCollectives: step s passes chunk r-s-1 right and adds chunk r-s-2 from the
  // left.
  for (int s = 0; s < W - 1; ++s) {
    const int send_c = Mod(r - s - 1, W), recv_c = Mod(r - s - 2, W);
    const int64_t send_n = off[send_c + 1] - off[send_c], recv_n = off[recv_c + 1] - off[recv_c];
    RingStep(data + off[send_c], send_n, right, tmp, recv_n, left, state_->comm);
    if (recv_n > 0)
      kernels::cuda::ResidualForward(data + off[recv_c], data + off[recv_c], tmp, recv_n);
  }
  Watch("reduce-scatter");
}

void NcclCollectives::Allgather(float* data, const std::vector<int64_t>& off) {
  if (world_ == 1) return;
  const int W = world_, r = rank_, right = Mod(r + 1, W), left = Mod(r - 1, W);
  for (int s = 0; s < W - 1; ++s) {
    const int send_c = Mod(r - s, W), recv_c = Mod(r - s - 1, W);
    const int64_t send_n = off[send_c + 1] - off[send_c], recv_n = off[recv_c + 1] - off[recv_c];
    RingStep(data + off[send_c], send_n, right, data + off[recv_c], recv_n, left, state_->comm);
  }
  Watch("allgather");
}

void NcclCollectives::AllgatherBytes(const void* mine, size_t bytes, void* all) {
  if (world_ == 1) {
    std::memcpy(all, mine, bytes);
    return;
  }
  const size_t total = bytes * static_cast<size_t>(world_);
  if (state_->bytes.size() < total) state_->bytes.assign(total, 0);
  char* buf = state_->bytes.data();
  Check(cudaMemcpy(buf + bytes * rank_, mine, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  Check(ncclAllGather(buf + bytes * rank_, buf, bytes, ncclChar, state_->comm, nullptr),
        "ncclAllGather");
  Watch("allgather-bytes");
  Check(cudaMemcpy(all, buf, total, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
}

void NcclCollectives::AllToAll(const float* send, float* recv, int64_t block) {
  Check(ncclGroupStart(), "ncclGroupStart");
  for (int q = 0; q < world_; ++q) {
    Check(ncclSend(send + q * block, block, ncclFloat, q, state_->comm, nullptr), "ncclSend");
    Check(ncclRecv(recv + q * block, block, ncclFloat, q, state_->comm, nullptr), "ncclRecv");
  }
  Check(ncclGroupEnd(), "ncclGroupEnd");
  Watch("all-to-all");
}

}  // namespace vigil::trainer
