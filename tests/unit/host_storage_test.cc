// The storage check an agent makes before it joins a job, and the address
// vigild advertises: the pieces both ends share (common/).
#include "common/host_storage.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/fs.h"
#include "common/net_address.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using testing::TempDir;

TEST(HostStorage, TheDirectoryVigildMarkedPasses) {
  TempDir dir;
  const auto id = MarkStorage(dir.path());
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->size(), 32u);
  EXPECT_TRUE(CheckHostStorage("h", dir.path(), id.value(), dir.path()).ok());
  // The write probes leave nothing behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename(), kStorageMarkFile);
    ++files;
  }
  EXPECT_EQ(files, 1);
  // A run taken over keeps its mark; another run's directory gets its own.
  EXPECT_EQ(MarkStorage(dir.path()).value(), id.value());
  TempDir other;
  EXPECT_NE(MarkStorage(other.path()).value(), id.value());
}

TEST(HostStorage, EachProblemIsNamed) {
  TempDir dir;
  std::filesystem::create_directories(dir / "ckpt");
  std::filesystem::create_directories(dir / "logs");
  const std::string id = MarkStorage(dir / "ckpt").value();
  auto problem = [&](const std::string& ckpt, const std::string& storage_id,
                     const std::string& logs) {
    const Status st = CheckHostStorage("h", ckpt, storage_id, logs);
    return st.ok() ? std::string("ok") : st.message();
  };
  EXPECT_NE(problem(dir / "gone", id, dir / "logs").find("cannot see the checkpoint directory"),
            std::string::npos);
  EXPECT_NE(problem(dir / "logs", id, dir / "logs").find("is missing"), std::string::npos);
  EXPECT_NE(problem(dir / "ckpt", "other", dir / "logs").find("holds another storage id"),
            std::string::npos);
  EXPECT_NE(problem("", id, dir / "logs").find("named no checkpoint directory"), std::string::npos);
  EXPECT_NE(problem(dir / "ckpt", id, dir / "gone").find("cannot see the log directory"),
            std::string::npos);
  std::ofstream(dir / "file") << "x";
  EXPECT_NE(problem(dir / "ckpt", id, dir / "file").find("is not a directory"), std::string::npos);
}

// A directory the agent's user cannot write to (run as `nobody` when the
// test is root: permission bits do not bind root).
TEST(HostStorage, ADirectoryItCannotWriteIsRefused) {
  TempDir dir;
  std::filesystem::create_directories(dir / "logs");
  std::filesystem::create_directories(dir / "ckpt");
  const std::string id = MarkStorage(dir / "ckpt").value();
  const std::string closed = dir / "closed";  // marked, not writable
  std::filesystem::create_directories(closed);
  std::filesystem::copy_file(dir / "ckpt/" + kStorageMarkFile, closed + "/" + kStorageMarkFile);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod((dir / "ckpt").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(closed.c_str(), 0555), 0);
  ASSERT_EQ(::chmod((dir / "logs").c_str(), 0555), 0);
  for (const auto& d : {dir / "ckpt", closed})
    ASSERT_EQ(::chmod((d + "/" + kStorageMarkFile).c_str(), 0644), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(2);
    const Status logs = CheckHostStorage("h", dir / "ckpt", id, dir / "logs");
    const Status ckpt = CheckHostStorage("h", closed, id, dir / "ckpt");
    const bool named =
        logs.message().find("cannot write to the log directory") != std::string::npos &&
        ckpt.message().find("cannot write to the checkpoint directory") != std::string::npos;
    ::_exit(named ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ::chmod((dir / "logs").c_str(), 0700);
  ::chmod(closed.c_str(), 0700);
}

TEST(NetAddress, AWildcardIsNeverAdvertised) {
  EXPECT_TRUE(IsWildcardAddress("0.0.0.0"));
  EXPECT_TRUE(IsWildcardAddress("::"));
  EXPECT_TRUE(IsWildcardAddress(""));
  EXPECT_FALSE(IsWildcardAddress("10.0.0.1"));
  EXPECT_EQ(AdvertisedAddress("0.0.0.0", "10.1.2.3").value(), "10.1.2.3");
  EXPECT_EQ(AdvertisedAddress("127.0.0.1", "").value(), "127.0.0.1");
  EXPECT_EQ(AdvertisedAddress("10.9.9.9", "").value(), "10.9.9.9");
  const auto bad = AdvertisedAddress("0.0.0.0", "0.0.0.0");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("wildcard"), std::string::npos);
  // Derived from this machine's interfaces: an address, never the wildcard.
  const auto derived = AdvertisedAddress("0.0.0.0", "");
  ASSERT_TRUE(derived.ok());
  EXPECT_FALSE(IsWildcardAddress(derived.value()));
  EXPECT_NE(derived.value().find('.'), std::string::npos) << derived.value();
}

}  // namespace
}  // namespace vigil
