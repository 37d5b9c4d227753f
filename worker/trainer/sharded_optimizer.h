// The optimizer step of data-parallel training, with ZeRO-style sharding.
//
// A rank's flat buffers have two regions (see model.h): the replicated
// parameters [0, replicated), the same on every rank, and its own experts
// [replicated, total), which no other rank holds. One Step:
//   1. reduce-scatter the replicated gradients (ring, fixed order), so rank
//      r holds the summed gradient of its balanced slice [lo_r, hi_r);
//      without sharding an allgather then gives every rank all of it;
//   2. divide by the world size (the loss is a mean over ranks);
//   3. clip by the global norm: each rank sums the squares of its slice and
//      of its experts, the sums go round (allgather) and are added in rank
//      order, so every rank, sharded or not, computes the same norm;
//   4. update: sharded, each rank updates its slice (holding the moments of
//      that slice only: 2 * replicated / world floats instead of
//      2 * replicated) and its experts, then allgathers the parameters;
//      unsharded, each rank updates everything.
// Both modes perform the same float operations on every parameter, so they
// give bit-identical parameters (tests/unit/distributed_test.cc holds them to
// that, tolerance zero).
//
// Checkpoints: each rank owns, in global indices, its slice of the
// replicated region plus its experts, in both modes, so a checkpoint written
// sharded resumes unsharded and back.
//
// Written over a kernel set K: parameters, gradients and moments live where
// K's buffers do, and the collectives must work on that memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "kernels/cpu/backend.h"
#include "worker/trainer/collectives.h"

namespace vigil::trainer {

struct ParamLayout {
  int64_t total = 0;       // floats in the rank's flat buffer
  int64_t replicated = 0;  // [0, replicated) is the same on every rank
  // Global index of the rank's first own-expert float (index `replicated`).
  int64_t own_global_begin = 0;
  int64_t global_total = 0;
};

struct OptimizerHyper {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f, grad_clip = 1.0f;
};

template <class K>
class ShardedOptimizerT {
 public:
  // kind: "adamw" or "sgd". shard: ZeRO on. Throws std::invalid_argument if
  // the collectives work on other memory than K's buffers.
  ShardedOptimizerT(const ParamLayout& layout, Collectives* coll, std::string kind, bool shard,
                    const OptimizerHyper& hyper);

  // Averages, clips and applies grads to params (both the rank's flat
  // buffers; grads is consumed). Returns the global gradient norm before
  // clipping. Collective.
  float Step(float* params, float* grads, float lr);

  const std::string& kind() const { return kind_; }
  bool has_moments() const { return kind_ == "adamw"; }
  // Updates the moments have seen; AdamW's bias correction counts from here.
  int64_t step() const { return step_; }

  // Checkpoint: the global ranges this rank owns (its update slice of the
  // replicated region, then its experts; checkpoint/layout.h states the
  // rule), and its floats over them in file order (params, then the moments
  // when it keeps any), in host memory: copied into *staging where K's
  // buffers are elsewhere.
  std::vector<checkpoint::IndexRange> OwnedRanges() const;
  std::vector<std::string> Sections() const;
  std::vector<checkpoint::ShardPiece> Pieces(const float* params,
                                             std::vector<float>* staging) const;
  // The global ranges whose moments this rank holds, in the order
  // LoadMoments takes them: its update slice, then its experts.
  std::vector<checkpoint::IndexRange> MomentRanges() const;
  // Takes the moments over MomentRanges() (m and v, host memory, the ranges
  // back to back) and the step count; null m and v start them from zero.
  void LoadMoments(const float* m, const float* v, int64_t step);
  // Bytes of optimizer state this rank holds.
  int64_t state_bytes() const {
    return static_cast<int64_t>((m_.size() + v_.size()) * sizeof(float));
  }

 private:
  // The replicated slice this rank updates: its own in ZeRO, all otherwise.
  int64_t update_begin() const { return shard_ ? lo_ : 0; }
  int64_t update_end() const { return shard_ ? hi_ : layout_.replicated; }
  int64_t own_count() const { return layout_.total - layout_.replicated; }
  // Moments are stored as [update slice | own experts].
  int64_t MomentIndex(int64_t i) const {
    return i < layout_.replicated ? i - update_begin()
                                  : (update_end() - update_begin()) + (i - layout_.replicated);
  }

  ParamLayout layout_;
  Collectives* coll_;
  std::string kind_;
  bool shard_;
  OptimizerHyper hyper_;
  std::vector<int64_t> offsets_;  // ZeRO slices of the replicated region
  int64_t lo_ = 0, hi_ = 0;       // this rank's slice
  typename K::template Vector<float> m_, v_;
  int64_t step_ = 0;
};

using ShardedOptimizer = ShardedOptimizerT<kernels::CpuKernels>;
extern template class ShardedOptimizerT<kernels::CpuKernels>;

}  // namespace vigil::trainer
