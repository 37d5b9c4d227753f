// Sharded checkpoints of a flat training state.
//
// The state is a set of sections (params, then the optimizer's moments if it
// keeps any), each `param_count` floats over one global parameter index
// space. Rank R owns a set of index ranges (its ZeRO slice of the replicated
// parameters, plus its experts under expert parallelism) and writes, for
// every section in order and every range in order, those floats to
// shard-<R>.bin. Any world size can read any checkpoint: loading assembles
// the whole state.
//
// Layout: <root>/step-<N>/ holds the shards and manifest.json, written last.
// Commit protocol:
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

struct IndexRange {
  int64_t begin = 0;  // first parameter index
  int64_t end = 0;    // one past the last
  int64_t size() const { return end - begin; }
};

struct ShardEntry {
  int rank = 0;
  std::string file;
  std::vector<IndexRange> ranges;
  uint64_t xxh3 = 0;
  int64_t floats_per_section() const;
};

struct Manifest {
  static constexpr int kFormatVersion = 2;
  int format_version = kFormatVersion;
  int64_t step = 0;  // number of optimizer steps completed
  int64_t tokens_seen = 0;
  int64_t data_position = 0;  // global sample index of the next batch
  uint64_t seed = 0;
  std::string optimizer;       // "adamw" | "sgd"
  int64_t optimizer_step = 0;  // updates the moments have seen (AdamW bias correction)
  double lr_scale = 1.0;       // the learning-rate multiplier in force when saved
  std::string config_hash;
  int world_size = 0;
  // The state is sections.size() sections of `param_count` floats each:
  // "params", then "adam_m" and "adam_v" for AdamW.
  int64_t param_count = 0;
  std::vector<std::string> sections;
  std::vector<TensorEntry> tensors;
  std::vector<ShardEntry> shards;

  std::string ToJson() const;
  static Result<Manifest> FromJson(const std::string& text, const std::string& source);
  int64_t total_floats() const { return param_count * static_cast<int64_t>(sections.size()); }
};

std::string StepDirName(int64_t step);

// A run of floats to write: one section's values over one range.
struct ShardPiece {
  const float* data = nullptr;
  int64_t count = 0;
};

// Step 1: writes rank's shard to <tmp_dir>/shard-<rank>.bin, fsynced. `pieces`
// are the shard's floats in file order (for each section, for each range);
// together they must hold `sections` times the ranges' total size.
Result<ShardEntry> WriteShard(const std::string& tmp_dir, int rank, int sections,
                              const std::vector<IndexRange>& ranges,
                              const std::vector<ShardPiece>& pieces);
// Step 3 (rank 0): manifest, fsyncs, rename, fsync parent. Returns the final directory.
Result<std::string> CommitCheckpoint(const std::string& root, const Manifest& manifest);

struct LoadedCheckpoint {
  Manifest manifest;
  std::vector<float> state;  // total_floats() values, section after section
  const float* section(size_t i) const { return state.data() + i * manifest.param_count; }
  // Index of the named section, or -1.
  int FindSection(const std::string& name) const;
  int64_t bytes = 0;
};

// Reads and verifies a committed checkpoint directory.
Result<LoadedCheckpoint> LoadCheckpoint(const std::string& dir);
// Verifies without keeping the state.
Status VerifyCheckpoint(const std::string& dir);

// Removes <root>/step-*.tmp debris left by a crash mid-save.
Status RemoveIncomplete(const std::string& root);

}  // namespace vigil::checkpoint
