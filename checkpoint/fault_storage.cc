#include "checkpoint/fault_storage.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace vigil::checkpoint {

namespace fs = std::filesystem;

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultInjectionStorage* owner, std::string path,
                    std::unique_ptr<WritableFile> base)
      : owner_(owner), path_(std::move(path)), base_(std::move(base)) {}
  Status Append(const void* data, size_t bytes) override {
    return owner_->Append(path_, base_.get(), data, bytes);
  }
  Status Sync() override { return owner_->Synced(path_, base_.get()); }
  Status Close() override { return base_->Close(); }

 private:
  FaultInjectionStorage* owner_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

namespace {

class FillableWritableFile final : public WritableFile {
 public:
  FillableWritableFile(const FillableStorage* owner, std::string path,
                       std::unique_ptr<WritableFile> base)
      : owner_(owner), path_(std::move(path)), base_(std::move(base)) {}
  Status Append(const void* data, size_t bytes) override {
    if (owner_->full()) return Status::IoError("write " + path_ + ": " + std::strerror(ENOSPC));
    return base_->Append(data, bytes);
  }
  Status Sync() override { return base_->Sync(); }
  Status Close() override { return base_->Close(); }

 private:
  const FillableStorage* owner_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

}  // namespace

Result<std::unique_ptr<WritableFile>> FillableStorage::NewWritableFile(const std::string& path) {
  auto file = base_->NewWritableFile(path);
  if (!file.ok()) return file.status();
  return std::unique_ptr<WritableFile>(
      std::make_unique<FillableWritableFile>(this, path, std::move(file.value())));
}

void FaultInjectionStorage::CrashAt(int op, std::function<void()> action) {
  std::lock_guard<std::mutex> lock(mu_);
  crash_op_ = op;
  crash_action_ = std::move(action);
}

void FaultInjectionStorage::FailWritesAfter(int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  write_budget_ = bytes;
}

std::vector<std::string> FaultInjectionStorage::trace() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trace_;
}

bool FaultInjectionStorage::dead() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dead_;
}

Status FaultInjectionStorage::Begin(const std::string& what) {
  std::function<void()> action;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int op = ops_++;
    trace_.push_back(what);
    if (dead_) return Status::IoError(what + ": the storage is gone (simulated crash)");
    if (op != crash_op_) return Status::Ok();
    dead_ = true;
    action = crash_action_;
  }
  if (action) action();
  return Status::IoError(what + ": simulated crash");
}

Result<std::unique_ptr<WritableFile>> FaultInjectionStorage::NewWritableFile(
    const std::string& path) {
  VIGIL_RETURN_IF_ERROR(Begin("create " + path));
  const bool existed = base_->Exists(path);
  auto file = base_->NewWritableFile(path);
  if (!file.ok()) return file.status();
  std::lock_guard<std::mutex> lock(mu_);
  size_[path] = 0;
  synced_size_[path] = 0;
  if (!existed) unsynced_dir_ops_.push_back({DirOp::kCreate, path, ""});
  return std::unique_ptr<WritableFile>(
      std::make_unique<FaultWritableFile>(this, path, std::move(file.value())));
}

Status FaultInjectionStorage::Append(const std::string& path, WritableFile* file, const void* data,
                                     size_t bytes) {
  VIGIL_RETURN_IF_ERROR(Begin("append " + path));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (write_budget_ >= 0) {
      if (static_cast<int64_t>(bytes) > write_budget_) {
        write_budget_ = 0;
        return Status::IoError("write " + path + ": " + std::strerror(ENOSPC));
      }
      write_budget_ -= static_cast<int64_t>(bytes);
    }
  }
  VIGIL_RETURN_IF_ERROR(file->Append(data, bytes));
  std::lock_guard<std::mutex> lock(mu_);
  size_[path] += bytes;
  return Status::Ok();
}

Status FaultInjectionStorage::Synced(const std::string& path, WritableFile* file) {
  VIGIL_RETURN_IF_ERROR(Begin("sync " + path));
  VIGIL_RETURN_IF_ERROR(file->Sync());
  std::lock_guard<std::mutex> lock(mu_);
  synced_size_[path] = size_[path];
  return Status::Ok();
}

Status FaultInjectionStorage::CreateDirs(const std::string& path) {
  VIGIL_RETURN_IF_ERROR(Begin("mkdir " + path));
  std::vector<std::string> created;
  for (fs::path p = path; !p.empty() && !base_->Exists(p); p = p.parent_path())
    created.insert(created.begin(), p.string());
  VIGIL_RETURN_IF_ERROR(base_->CreateDirs(path));
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : created) unsynced_dir_ops_.push_back({DirOp::kCreate, c, ""});
  return Status::Ok();
}

Status FaultInjectionStorage::SyncDir(const std::string& path) {
  VIGIL_RETURN_IF_ERROR(Begin("syncdir " + path));
  VIGIL_RETURN_IF_ERROR(base_->SyncDir(path));
  std::lock_guard<std::mutex> lock(mu_);
  const fs::path dir = fs::path(path).lexically_normal();
  std::erase_if(unsynced_dir_ops_, [&](const DirOp& op) {
    return fs::path(op.path).parent_path().lexically_normal() == dir;
  });
  return Status::Ok();
}

Status FaultInjectionStorage::Rename(const std::string& from, const std::string& to) {
  VIGIL_RETURN_IF_ERROR(Begin("rename " + from + " " + to));
  VIGIL_RETURN_IF_ERROR(base_->Rename(from, to));
  std::lock_guard<std::mutex> lock(mu_);
  // Files under a renamed directory move with it.
  auto move_keys = [&](std::map<std::string, uint64_t>& m) {
    std::map<std::string, uint64_t> out;
    for (auto& [k, v] : m) {
      if (k == from || k.rfind(from + "/", 0) == 0)
        out[to + k.substr(from.size())] = v;
      else
        out[k] = v;
    }
    m.swap(out);
  };
  move_keys(size_);
  move_keys(synced_size_);
  unsynced_dir_ops_.push_back({DirOp::kRename, to, from});
  return Status::Ok();
}

Status FaultInjectionStorage::RemoveFile(const std::string& path) {
  VIGIL_RETURN_IF_ERROR(Begin("unlink " + path));
  return base_->RemoveFile(path);
}

Status FaultInjectionStorage::RemoveAll(const std::string& path) {
  VIGIL_RETURN_IF_ERROR(Begin("remove " + path));
  return base_->RemoveAll(path);
}

Status FaultInjectionStorage::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [path, size] : size_) {
    const uint64_t keep = synced_size_[path];
    if (size > keep && base_->Exists(path) && ::truncate(path.c_str(), static_cast<off_t>(keep)))
      return Status::IoError("truncate " + path + ": " + std::strerror(errno));
  }
  for (auto it = unsynced_dir_ops_.rbegin(); it != unsynced_dir_ops_.rend(); ++it) {
    if (!base_->Exists(it->path)) continue;
    if (it->kind == DirOp::kCreate) {
      VIGIL_RETURN_IF_ERROR(base_->RemoveAll(it->path));
    } else {
      VIGIL_RETURN_IF_ERROR(base_->Rename(it->path, it->from));
    }
  }
  unsynced_dir_ops_.clear();
  size_.clear();
  synced_size_.clear();
  dead_ = false;
  crash_op_ = -1;
  return Status::Ok();
}

}  // namespace vigil::checkpoint
