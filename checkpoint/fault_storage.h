// A Storage that injects the faults a checkpoint must survive, over a real
// one (after LevelDB's FaultInjectionTestEnv):
//   * a crash at the N-th mutating operation: a callback runs instead of the
//     operation (a test's child process raises SIGKILL there), or, with no
//     callback, the storage goes dead: that operation and every later one
//     fail, as if the machine had lost power;
//   * loss of what was never made durable: DropUnsyncedData() truncates
//     every file to what its last Sync() covered and undoes every create
//     and rename whose directory was not synced since, newest first;
//   * a full disk: appends past a byte budget fail with ENOSPC's message
//     (and FillableStorage below: a disk that is full while a switch is on).
// Every mutating operation is traced ("append shard-0.bin", "rename ..."),
// so a test can first record a save's protocol, then crash at each step.
//
// Thread-safe: ranks in threads share one.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "checkpoint/storage.h"

namespace vigil::checkpoint {

class FaultInjectionStorage final : public ForwardingStorage {
 public:
  explicit FaultInjectionStorage(Storage* base = Storage::Default()) : ForwardingStorage(base) {}

  // Operation `op` (0-based, counted over mutating operations) does not
  // happen; `action` runs in its place (if it returns, the storage is dead).
  void CrashAt(int op, std::function<void()> action = nullptr);
  // Appends fail once `bytes` more would have been written in total.
  void FailWritesAfter(int64_t bytes);
  // Brings the files back to what a power loss would leave: see above.
  Status DropUnsyncedData();

  std::vector<std::string> trace() const;
  bool dead() const;

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Status CreateDirs(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status RemoveAll(const std::string& path) override;

 private:
  friend class FaultWritableFile;
  // Counts and traces one mutating operation; an error if it must not happen.
  Status Begin(const std::string& what);
  Status Append(const std::string& path, WritableFile* file, const void* data, size_t bytes);
  Status Synced(const std::string& path, WritableFile* file);

  struct DirOp {  // a directory entry change not yet synced in its parent
    enum Kind { kCreate, kRename } kind;
    std::string path, from;
  };
  mutable std::mutex mu_;
  int ops_ = 0;
  int crash_op_ = -1;
  std::function<void()> crash_action_;
  bool dead_ = false;
  int64_t write_budget_ = -1;
  std::vector<std::string> trace_;
  std::map<std::string, uint64_t> size_, synced_size_;  // files written through this storage
  std::vector<DirOp> unsynced_dir_ops_;
};

// A disk that chaos can fill, for production processes (vigil-train's
// `disk-full` fault): while full, every append fails with ENOSPC's message;
// otherwise every call goes straight to the base. It keeps no trace and no
// state beyond the switch, so it can sit in front of a months-long run.
// Thread-safe: the switch is atomic (an asynchronous writer appends while
// the training thread flips it).
class FillableStorage final : public ForwardingStorage {
 public:
  explicit FillableStorage(Storage* base = Storage::Default()) : ForwardingStorage(base) {}
  void set_full(bool full) { full_.store(full); }
  bool full() const { return full_.load(); }

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;

 private:
  std::atomic<bool> full_{false};
};

}  // namespace vigil::checkpoint
