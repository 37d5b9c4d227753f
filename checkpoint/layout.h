// Who owns what: the one rule that places a training state on a world of
// ranks. The trainer's optimizer shards by it, checkpoints are written by
// it, and `vigil ckpt reshard` rewrites a checkpoint by it, so a resharded
// checkpoint has exactly the shards a run at the new size would write.
//
// The global index space is [dense params | expert 0 | ... | expert E-1].
// With expert parallelism (placement allows it, CPU ranks, and the world
// size divides the experts), rank r holds experts [r*E/W, (r+1)*E/W) alone
// and a balanced slice of the dense region; otherwise every parameter is
// replicated and rank r owns a balanced slice of all of them. A rank's
// checkpoint shard is what it owns, in every section.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/manifest.h"
#include "common/partition.h"

namespace vigil::checkpoint {

inline bool ExpertsShardedAt(int experts, const std::string& placement, const std::string& device,
                             int world) {
  // The expert exchange moves host memory: CUDA ranks replicate their experts.
  if (experts == 0 || world == 1 || placement == "replicated" || device != "cpu") return false;
  return experts % world == 0;  // "auto" falls back to replicated otherwise
}

inline bool ExpertsSharded(const StateLayout& l, int world) {
  return ExpertsShardedAt(l.experts, l.expert_placement, l.device, world);
}

// The global ranges rank `rank` of `world` owns, in file order.
inline std::vector<IndexRange> OwnedRanges(const StateLayout& l, int rank, int world) {
  const bool sharded = ExpertsSharded(l, world);
  const int64_t total = l.dense_params + l.experts * l.params_per_expert;
  IndexRange slice;
  BalancedRange(sharded ? l.dense_params : total, rank, world, &slice.begin, &slice.end);
  std::vector<IndexRange> out;
  if (slice.size() > 0) out.push_back(slice);
  if (sharded) {
    const int64_t per_rank = static_cast<int64_t>(l.experts / world) * l.params_per_expert;
    out.push_back({l.dense_params + rank * per_rank, l.dense_params + (rank + 1) * per_rank});
  }
  return out;
}

}  // namespace vigil::checkpoint
