// The file-system seam of the checkpoint library (LevelDB's Env, cut down to
// what checkpoints need). Every byte a checkpoint writes or reads goes
// through a Storage, so tests can crash a save at any step, drop the data
// that was never synced, or fill the disk (fault_storage.h), and the code
// under test is the code that runs in production.
//
// Durability is explicit: data written to a WritableFile is durable after
// Sync(); a directory entry (a created file, a rename) is durable after
// SyncDir() of its directory. Nothing else is promised, and the fault
// storage holds the library to exactly that.
//
// Thread-safety: Default() is safe to use from any thread; a WritableFile or
// ReadableFile belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::checkpoint {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(const void* data, size_t bytes) = 0;
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
};

class ReadableFile {
 public:
  virtual ~ReadableFile() = default;
  // Reads exactly `bytes` at `offset`; a short file is an error.
  virtual Status ReadAt(uint64_t offset, size_t bytes, void* dst) const = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;
  // The POSIX file system. Never deleted.
  static Storage* Default();

  // Creates or truncates.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  virtual Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) = 0;
  virtual Result<std::string> ReadWholeFile(const std::string& path) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Entry names (not paths) of a directory, sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  // mkdir -p; the new entries are not durable until their parents are synced.
  virtual Status CreateDirs(const std::string& path) = 0;
  virtual Status SyncDir(const std::string& path) = 0;
  // rename(2): atomic; replaces an empty directory or a file at `to`.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  virtual Status RemoveAll(const std::string& path) = 0;
};

// A Storage that passes every call to `base`: wrappers that change a few
// operations (fault_storage.h) override just those.
class ForwardingStorage : public Storage {
 public:
  explicit ForwardingStorage(Storage* base) : base_(base) {}

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return base_->NewWritableFile(path);
  }
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
  Status CreateDirs(const std::string& path) override { return base_->CreateDirs(path); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }
  Status Rename(const std::string& from, const std::string& to) override {
    return base_->Rename(from, to);
  }
  Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  Status RemoveAll(const std::string& path) override { return base_->RemoveAll(path); }

 protected:
  Storage* base_;
};

// Writes `contents` to `path` durably and atomically through `storage`:
// path.tmp, sync, rename, sync the directory.
Status WriteFileDurably(Storage* storage, const std::string& path, const std::string& contents);

}  // namespace vigil::checkpoint
