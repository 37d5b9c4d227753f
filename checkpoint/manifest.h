// A checkpoint's manifest (manifest.json, written last): what the state is,
// where every byte of it lies, and how to check it.
//
// The training state is `sections` (params, then the optimizer's moments
// when it keeps any), each `param_count` f32 values over one global
// parameter index space that the model's tensors tile. Every tensor of every
// section is listed with its dtype, global shape and offset, and with its
// slices: which element range of the tensor lies in which shard file, at
// which byte offset, how long, with its xxHash3. A rank that needs only
// part of the state reads (and verifies) only the slices that hold it,
// whatever world size wrote them; that is how a checkpoint reshards.
//
// FromJson trusts nothing: every count and offset is bounds-checked, the
// slices of every tensor tile it exactly once, the slices of every shard
// tile its file exactly once, the tensors of every section tile the index
// space, and shard files are plain names inside the checkpoint's directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::checkpoint {

// A tensor of the model, as it lies in the global parameter index space.
struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // global index of its first element
  int64_t numel() const;
};

struct IndexRange {
  int64_t begin = 0;  // first parameter index
  int64_t end = 0;    // one past the last
  int64_t size() const { return end - begin; }
};

struct SliceEntry {
  int64_t begin = 0, end = 0;  // element range within the tensor
  int shard = 0;               // index into Manifest::shards
  int64_t file_offset = 0;     // bytes
  int64_t length = 0;          // bytes
  uint64_t xxh3 = 0;
};

struct TensorEntry {
  std::string section;  // "params", "adam_m", "adam_v"
  std::string name;     // the model's tensor name
  std::string dtype = "f32";
  std::vector<int64_t> shape;
  int64_t offset = 0;  // global index of its first element within the section
  std::vector<SliceEntry> slices;
  int64_t numel() const;
  std::string full_name() const { return section + "/" + name; }
};

struct ShardEntry {
  int rank = 0;
  std::string file;
  int64_t bytes = 0;
};

// How the state is placed on ranks, so a tool can reshard it to any world
// the way the trainer would (layout.h).
struct StateLayout {
  int64_t dense_params = 0;               // [0, dense_params): every rank's (ZeRO-sliced in files)
  int experts = 0;                        // then `experts` blocks of params_per_expert
  int64_t params_per_expert = 0;          // (all MoE layers' share of one expert)
  std::string expert_placement = "auto";  // the job's model.moe.placement
  std::string device = "cpu";
};

// Where the data order resumes: batches are drawn by global sample index
// from the corpus's seeded permutation, so this is the whole loader state.
struct DataLoaderState {
  uint64_t seed = 0;
  int64_t next_sample = 0;       // global sample index of the next batch
  int64_t samples_per_step = 0;  // the global batch
};

struct Manifest {
  static constexpr int kFormatVersion = 3;
  int format_version = kFormatVersion;
  int64_t step = 0;  // optimizer steps completed
  int64_t tokens_seen = 0;
  DataLoaderState data_loader;
  // The trainer draws no random numbers after initialisation (no dropout):
  // parameters come from (seed, tensor), samples from (seed, index). The
  // generator and its seed are recorded so a resumed run can prove it.
  std::string rng = "splitmix64";
  uint64_t rng_seed = 0;
  std::string optimizer;       // "adamw" | "sgd"
  int64_t optimizer_step = 0;  // updates the moments have seen (AdamW bias correction)
  double lr_scale = 1.0;       // the learning-rate multiplier in force when saved
  std::string config_hash;
  std::string config_json = "{}";  // the model and data configuration, for people
  int world_size = 0;              // of the run that wrote it
  StateLayout layout;
  int64_t param_count = 0;
  std::vector<std::string> sections;
  std::vector<ShardEntry> shards;
  std::vector<TensorEntry> tensors;  // section by section, each in offset order

  std::string ToJson() const;
  static Result<Manifest> FromJson(const std::string& text, const std::string& source);
  int64_t total_bytes() const;
  int FindSection(const std::string& name) const;
};

std::string Hex64(uint64_t v);

}  // namespace vigil::checkpoint
