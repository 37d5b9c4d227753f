#include "checkpoint/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace vigil::checkpoint {
namespace {

namespace fs = std::filesystem;

Status Errno(const char* what, const std::string& path, int err = errno) {
  return Status::IoError(std::string(what) + " " + path + ": " + std::strerror(err));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Append(const void* data, size_t bytes) override {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, bytes);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("write", path_);
      p += n;
      bytes -= static_cast<size_t>(n);
      written_ += static_cast<uint64_t>(n);
    }
    // Start writeback of every full window as soon as it is written, so the
    // disk works while the rest is checksummed and written, and Sync() waits
    // only for the tail. (A hint: durability still comes from Sync().)
    while (written_ - kicked_ >= kWriteback) {
      (void)::sync_file_range(fd_, static_cast<off_t>(kicked_), kWriteback, SYNC_FILE_RANGE_WRITE);
      kicked_ += kWriteback;
    }
    return Status::Ok();
  }
  Status Sync() override { return ::fdatasync(fd_) == 0 ? Status::Ok() : Errno("fsync", path_); }
  Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? Status::Ok() : Errno("close", path_);
  }

 private:
  static constexpr uint64_t kWriteback = 32u << 20;
  std::string path_;
  int fd_;
  uint64_t written_ = 0, kicked_ = 0;
};

class PosixReadableFile final : public ReadableFile {
 public:
  PosixReadableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixReadableFile() override { ::close(fd_); }
  Status ReadAt(uint64_t offset, size_t bytes, void* dst) const override {
    char* p = static_cast<char*>(dst);
    while (bytes > 0) {
      const ssize_t n = ::pread(fd_, p, bytes, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Errno("read", path_);
      if (n == 0) return Status::Corruption(path_ + ": shorter than its manifest says");
      p += n;
      offset += static_cast<uint64_t>(n);
      bytes -= static_cast<size_t>(n);
    }
    return Status::Ok();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixStorage final : public Storage {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Errno("open", path);
    return std::unique_ptr<WritableFile>(std::make_unique<PosixWritableFile>(path, fd));
  }
  Result<std::unique_ptr<ReadableFile>> OpenReadable(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return errno == ENOENT ? Status::NotFound(path + " is missing") : Errno("open", path);
    return std::unique_ptr<ReadableFile>(std::make_unique<PosixReadableFile>(path, fd));
  }
  Result<std::string> ReadWholeFile(const std::string& path) override {
    auto size = FileSize(path);
    if (!size.ok()) return size.status();
    auto file = OpenReadable(path);
    if (!file.ok()) return file.status();
    std::string out(size.value(), '\0');
    VIGIL_RETURN_IF_ERROR(file.value()->ReadAt(0, out.size(), out.data()));
    return out;
  }
  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return errno == ENOENT ? Status::NotFound(path + " is missing") : Errno("stat", path);
    return static_cast<uint64_t>(st.st_size);
  }
  bool Exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    std::error_code ec;
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path, ec)) out.push_back(e.path().filename());
    if (ec) return Status::IoError("list " + path + ": " + ec.message());
    std::sort(out.begin(), out.end());
    return out;
  }
  Status CreateDirs(const std::string& path) override {
    std::error_code ec;
    fs::create_directories(path, ec);
    return ec ? Status::IoError("mkdir " + path + ": " + ec.message()) : Status::Ok();
  }
  Status SyncDir(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno("open", path);
    const int rc = ::fsync(fd), err = errno;
    ::close(fd);
    return rc == 0 ? Status::Ok() : Errno("fsync", path, err);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    return ::rename(from.c_str(), to.c_str()) == 0 ? Status::Ok() : Errno("rename", from);
  }
  Status RemoveFile(const std::string& path) override {
    return ::unlink(path.c_str()) == 0 || errno == ENOENT ? Status::Ok() : Errno("unlink", path);
  }
  Status RemoveAll(const std::string& path) override {
    std::error_code ec;
    fs::remove_all(path, ec);
    return ec ? Status::IoError("remove " + path + ": " + ec.message()) : Status::Ok();
  }
};

}  // namespace

Storage* Storage::Default() {
  static PosixStorage* storage = new PosixStorage();
  return storage;
}

Status WriteFileDurably(Storage* storage, const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  auto file = storage->NewWritableFile(tmp);
  if (!file.ok()) return file.status();
  Status st = file.value()->Append(contents.data(), contents.size());
  if (st.ok()) st = file.value()->Sync();
  if (st.ok()) st = file.value()->Close();
  if (st.ok()) st = storage->Rename(tmp, path);
  if (!st.ok()) {
    (void)storage->RemoveFile(tmp);
    return st;
  }
  const auto parent = fs::path(path).parent_path().string();
  return storage->SyncDir(parent.empty() ? "." : parent);
}

}  // namespace vigil::checkpoint
