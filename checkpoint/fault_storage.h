// A Storage that injects the faults a checkpoint must survive, over a real
// one (after LevelDB's FaultInjectionTestEnv):
//   * a crash at the N-th mutating operation: a callback runs instead of the
//     operation (a test's child process raises SIGKILL there), or, with no
//     callback, the storage goes dead: that operation and every later one
//     fail, as if the machine had lost power;
//   * loss of what was never made durable: DropUnsyncedData() truncates
//     every file to what its last Sync() covered and undoes every create
//     and rename whose directory was not synced since, newest first;
//   * a full disk: appends past a byte budget fail with ENOSPC's message.
// Every mutating operation is traced ("append shard-0.bin", "rename ..."),
// so a test can first record a save's protocol, then crash at each step.
//
// Thread-safe: ranks in threads share one.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "checkpoint/storage.h"

namespace vigil::checkpoint {

class FaultInjectionStorage final : public Storage {
 public:
  explicit FaultInjectionStorage(Storage* base = Storage::Default()) : base_(base) {}

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
  Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) override {
    return base_->OpenReadable(path);
  }
  Result<std::string> ReadWholeFile(const std::string& path) override {
    return base_->ReadWholeFile(path);
  }
  Result<uint64_t> FileSize(const std::string& path) override { return base_->FileSize(path); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
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
  Storage* base_;
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

}  // namespace vigil::checkpoint
