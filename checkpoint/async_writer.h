// A rank's background shard writer: asynchronous checkpoints with bounded
// memory.
//
// Start() hands over the shard's pieces (live training memory) and returns
// at once. The writer thread first copies them into its own buffer (the
// snapshot), then writes, checksums and syncs the shard file from that
// buffer while training goes on. The caller must not change the pieces'
// memory until WaitSnapshot() returns: the trainer calls it just before the
// optimizer step, so the copy overlaps the next forward and backward pass
// and costs the training loop nothing when that pass takes longer.
//
// At most one shard is in flight: Start() requires the previous one to have
// been collected with Wait(), which is where back-pressure comes from. The
// buffer is reused from save to save, so the memory is one shard, however
// often the job saves.
//
// Rank 0 also hands it the commit (manifest, syncs, renames: several
// fsyncs a training step need not wait for) with StartCommit(); the result
// is collected with WaitCommit(). One task at a time, shard or commit.
//
// Thread-safety: one training thread calls everything; the writer thread is
// internal.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"

namespace vigil::checkpoint {

class AsyncShardWriter {
 public:
  AsyncShardWriter();
  ~AsyncShardWriter();  // waits for a shard in flight
  AsyncShardWriter(const AsyncShardWriter&) = delete;
  AsyncShardWriter& operator=(const AsyncShardWriter&) = delete;

  void Start(Storage* storage, std::string path, std::vector<PlannedSlice> plan,
             std::vector<ShardPiece> pieces);
  bool busy() const;  // started and not yet collected
  // Blocks until the pieces have been copied (at once when nothing is in flight).
  void WaitSnapshot();
  // Whether the shard is written (or failed) and ready to collect.
  bool written() const;
  // Blocks until written; returns the slices' checksums, and forgets the job.
  Result<std::vector<uint64_t>> Wait();
  // Bytes of the snapshot buffer.
  size_t buffer_bytes() const;

  // Runs `commit` on the writer thread; requires no shard or commit in flight.
  void StartCommit(std::function<Result<std::string>()> commit);
  bool committing() const;  // started and not yet collected
  bool committed() const;   // done and ready to collect
  Result<std::string> WaitCommit();

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool has_job_ = false, snapshot_done_ = true, written_ = false;
  Storage* storage_ = nullptr;
  std::string path_;
  std::vector<PlannedSlice> plan_;
  std::vector<ShardPiece> pieces_;
  std::optional<Result<std::vector<uint64_t>>> result_;
  std::function<Result<std::string>()> commit_;
  bool has_commit_ = false, commit_done_ = false;
  std::optional<Result<std::string>> commit_result_;
  std::vector<float> buffer_;  // the writer thread's alone
  size_t buffer_bytes_ = 0;
  std::thread thread_;
};

}  // namespace vigil::checkpoint
