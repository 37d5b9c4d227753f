// Sharded checkpoints of a flat training state.
//
// Layout: <root>/step-<N>/ holds shard-<R>.bin (rank R's contiguous slice of
// the flat state) and manifest.json, written last. Commit protocol:
//   1. every rank writes its shard into step-<N>.tmp/ and fsyncs it;
//   2. the ranks exchange (bytes, checksum) of their shards (a collective,
//      so every shard is durable before the next step);
//   3. rank 0 writes the manifest, fsyncs it and the directory, renames
//      step-<N>.tmp to step-<N> and fsyncs <root>.
// A directory without ".tmp" and with a manifest is complete; anything else
// is debris from a crash and is never loaded.
//
// Loading verifies everything before handing back a byte: manifest fields,
// shard names (plain file names only), sizes, xxHash3 checksums, the slices
// tiling the state exactly. This library only stores; callers record in the
// logbook.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::checkpoint {

struct TensorEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, within its section of the flat state
};

struct ShardEntry {
  int rank = 0;
  std::string file;
  int64_t begin = 0;  // first float of the flat state in this shard
  int64_t end = 0;    // one past the last
  uint64_t xxh3 = 0;
};

struct Manifest {
  int format_version = 1;
  int64_t step = 0;  // number of optimizer steps completed
  int64_t tokens_seen = 0;
  int64_t data_position = 0;  // global sample index of the next batch
  uint64_t seed = 0;
  std::string optimizer;  // "adamw" | "sgd"
  std::string config_hash;
  int world_size = 0;
  // The flat state is [params | moment1 | moment2], each `param_count` floats.
  int64_t param_count = 0;
  std::vector<std::string> sections;
  std::vector<TensorEntry> tensors;
  std::vector<ShardEntry> shards;

  std::string ToJson() const;
  static Result<Manifest> FromJson(const std::string& text, const std::string& source);
  int64_t total_floats() const { return param_count * static_cast<int64_t>(sections.size()); }
};

std::string StepDirName(int64_t step);
// Slice of `total` floats owned by `rank` of `world` (contiguous, balanced).
void ShardRange(int64_t total, int rank, int world, int64_t* begin, int64_t* end);

// Step 1: writes rank's slice [begin, end) of `state` to <tmp_dir>/shard-<rank>.bin, fsynced.
Result<ShardEntry> WriteShard(const std::string& tmp_dir, int rank, const float* state,
                              int64_t begin, int64_t end);
// Step 3 (rank 0): manifest, fsyncs, rename, fsync parent. Returns the final directory.
Result<std::string> CommitCheckpoint(const std::string& root, const Manifest& manifest);

struct LoadedCheckpoint {
  Manifest manifest;
  std::vector<float> state;  // total_floats() values
  int64_t bytes = 0;
};

// Reads and verifies a committed checkpoint directory.
Result<LoadedCheckpoint> LoadCheckpoint(const std::string& dir);
// Verifies without keeping the state.
Status VerifyCheckpoint(const std::string& dir);

// Removes <root>/step-*.tmp debris left by a crash mid-save.
Status RemoveIncomplete(const std::string& root);

}  // namespace vigil::checkpoint
