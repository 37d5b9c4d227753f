#include "common/host_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fs.h"
#include "common/util.h"

namespace vigil {

namespace {

Status IsDirectory(const std::string& what, const std::string& dir) {
  if (dir.empty()) return Status::InvalidArgument("vigild named no " + what);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return Status::NotFound("cannot see the " + what + " " + dir + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return Status::FailedPrecondition("the " + what + " " + dir + " is not a directory");
  return Status::Ok();
}

// Creates, writes, syncs and removes a file of this host's in `dir`.
Status CanWrite(const std::string& what, const std::string& dir, const std::string& host) {
  const std::string probe = dir + "/.vigil-write-check." + host + "." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::FailedPrecondition("cannot write to the " + what + " " + dir + ": " +
                                      std::strerror(errno));
  }
  const char byte = 'v';
  const bool wrote = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!wrote) {
    return Status::IoError("cannot write to the " + what + " " + dir + ": " + std::strerror(saved));
  }
  return Status::Ok();
}

}  // namespace

Result<std::string> MarkStorage(const std::string& checkpoint_dir) {
  // A vigild taking the run over keeps the mark: agents' caches may hold it,
  // and a stale vigild (woken from a stop) still hands it out.
  if (auto old = ReadFile(checkpoint_dir + "/" + kStorageMarkFile); old.ok()) {
    std::string id = old.value();
    if (!id.empty() && id.back() == '\n') id.pop_back();
    if (id.size() == 32) return id;
  }
  const std::string id = GenerateToken().substr(0, 32);
  VIGIL_RETURN_IF_ERROR(WriteFileAtomic(checkpoint_dir + "/" + kStorageMarkFile, id + "\n"));
  return id;
}

Status CheckHostStorage(const std::string& host, const std::string& checkpoint_dir,
                        const std::string& storage_id, const std::string& log_dir) {
  VIGIL_RETURN_IF_ERROR(IsDirectory("checkpoint directory", checkpoint_dir));
  const std::string mark = checkpoint_dir + "/" + kStorageMarkFile;
  auto id = ReadFile(mark);
  if (id.ok() && !id.value().empty() && id.value().back() == '\n') id.value().pop_back();
  if (!id.ok() || id.value() != storage_id) {
    return Status::FailedPrecondition("the checkpoint directory " + checkpoint_dir +
                                      " here is not the one vigild made (" + mark +
                                      (id.ok() ? " holds another storage id" : " is missing") +
                                      "): is the shared filesystem mounted on this host?");
  }
  VIGIL_RETURN_IF_ERROR(CanWrite("checkpoint directory", checkpoint_dir, host));
  VIGIL_RETURN_IF_ERROR(IsDirectory("log directory", log_dir));
  return CanWrite("log directory", log_dir, host);
}

}  // namespace vigil
