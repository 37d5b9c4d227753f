// Sharded checkpoints: writing, committing, reading and verifying them.
//
// Layout: <root>/step-<N>/ holds shard-<R>.bin per rank and manifest.json
// (manifest.h), written last. Rank R's shard holds, for every section in
// order and every range it owns in order (layout.h), those floats; the
// manifest cuts them into per-tensor slices, each with its checksum.
//
// Commit protocol (every step goes through a Storage, storage.h):
//   1. every rank writes its shard into step-<N>.tmp/ and syncs it;
//   2. the ranks exchange their slice checksums (a collective: no rank goes
//      on believing in a checkpoint whose other shards failed);
//   3. rank 0 writes the manifest durably (manifest.json.tmp, sync, rename),
//      syncs step-<N>.tmp/ (the shards' directory entries), renames it to
//      step-<N> and syncs <root>.
// Only then is the checkpoint reported, recorded in the logbook and
// considered for resume. A crash at any point leaves either no step-<N> or a
// complete, durable one; step-*.tmp debris is removed at the next start.
//
// Reading verifies before handing back a byte: the manifest (manifest.h),
// every shard's size, and the checksum of every slice read. A rank reads only
// the slices holding the ranges it needs, so any world size can load any
// checkpoint. This library only stores; callers record in the logbook.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/manifest.h"
#include "checkpoint/storage.h"
#include "common/status.h"

namespace vigil::checkpoint {

std::string StepDirName(int64_t step);
std::string ShardFileName(int rank);

// A run of floats to write: one section's values over one range.
struct ShardPiece {
  const float* data = nullptr;
  int64_t count = 0;
};

// One per-tensor slice of a shard file.
struct PlannedSlice {
  int section = 0;
  int tensor = 0;              // index into the tensor list
  int64_t begin = 0, end = 0;  // element range within the tensor
  int64_t file_offset = 0;     // bytes
};

// The slices of a shard holding `ranges` of each of `sections` sections, in
// file order: for each section, each range, each tensor the range crosses.
// `tensors` must tile the index space in offset order.
std::vector<PlannedSlice> PlanShard(const std::vector<TensorInfo>& tensors, int sections,
                                    const std::vector<IndexRange>& ranges);

// Step 1: writes a shard file (pieces in file order, as many floats as the
// plan) and syncs it. Returns the checksum of every planned slice.
Result<std::vector<uint64_t>> WriteShard(Storage* storage, const std::string& path,
                                         const std::vector<PlannedSlice>& plan,
                                         const std::vector<ShardPiece>& pieces);
// The same with the slices' data fetched one at a time: source(i) returns
// plan[i]'s floats, valid until the next call (a resharder's scratch buffer).
using SliceSource = std::function<Result<const float*>(size_t slice)>;
Result<std::vector<uint64_t>> WriteShard(Storage* storage, const std::string& path,
                                         const std::vector<PlannedSlice>& plan,
                                         const SliceSource& source);

// What rank 0 learns of every shard in step 2.
struct ShardReport {
  std::vector<IndexRange> ranges;
  std::vector<uint64_t> checksums;  // one per slice of PlanShard(tensors, sections, ranges)
};
// Fills m->shards and m->tensors (m->sections and the header come from the caller).
Status DescribeShards(Manifest* m, const std::vector<TensorInfo>& tensors,
                      const std::vector<ShardReport>& shards);

// Step 3: the manifest, syncs, rename. Returns the committed directory.
Result<std::string> CommitCheckpoint(Storage* storage, const std::string& root,
                                     const Manifest& manifest);

// A committed checkpoint opened for reading. Open checks the manifest and
// that every shard has the size it promises; Read verifies as it goes.
// Not thread-safe.
class CheckpointReader {
 public:
  static Result<std::unique_ptr<CheckpointReader>> Open(Storage* storage, const std::string& dir);

  const Manifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  // Copies section values [begin, end) into dst after verifying every slice
  // that holds part of them. Corruption names the shard file and tensor.
  Status Read(int section, int64_t begin, int64_t end, float* dst);
  // A whole section, verified.
  Result<std::vector<float>> ReadSection(const std::string& name);
  // Reads and verifies every slice of every shard; reports the first failure.
  Status VerifyAll();
  int64_t bytes_read() const { return bytes_read_; }

 private:
  CheckpointReader(Storage* storage, std::string dir, Manifest m);
  Result<const ReadableFile*> Shard(int shard);
  Status ReadSlice(const TensorEntry& t, const SliceEntry& s, float* dst);

  Storage* storage_;
  std::string dir_;
  Manifest manifest_;
  std::vector<std::vector<const TensorEntry*>> by_section_;  // in offset order
  std::map<int, std::unique_ptr<ReadableFile>> files_;
  std::vector<float> bounce_;
  int64_t bytes_read_ = 0;
};

// Checks the manifest and every checksum of a committed checkpoint.
Status VerifyCheckpoint(Storage* storage, const std::string& dir);

// The step of a committed checkpoint directory name ("step-00000040"), or -1.
int64_t StepOfDirName(const std::string& name);
// Committed checkpoint directories under root (a step-<N> with a manifest
// file; not verified), newest step first.
Result<std::vector<std::string>> ListCommitted(Storage* storage, const std::string& root);
// Removes <root>/step-*.tmp debris left by a crash mid-save.
Status RemoveIncomplete(Storage* storage, const std::string& root);

}  // namespace vigil::checkpoint
