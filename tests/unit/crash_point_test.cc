// Crash points (common/crash_point.h): what VIGIL_CRASH_AT names, and that
// reaching an armed point really kills the process, once per once-file.
#include "common/crash_point.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unit/test_util.h"

namespace vigil {
namespace {

TEST(VigildCrashPoints, ParsesPointsAndGenerationsAndRefusesUnknownOnes) {
  auto c = CrashPoints::Parse("rank-started@3", "");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c.value().Matches(crash_point::kRankStarted, 3));
  EXPECT_FALSE(c.value().Matches(crash_point::kRankStarted, 2));
  EXPECT_FALSE(c.value().Matches(crash_point::kSaving, 3));
  auto any = CrashPoints::Parse("saving", "");
  ASSERT_TRUE(any.ok());
  EXPECT_TRUE(any.value().Matches(crash_point::kSaving, 0));
  EXPECT_TRUE(any.value().Matches(crash_point::kSaving, 7));
  EXPECT_FALSE(CrashPoints().armed());
  EXPECT_FALSE(CrashPoints().Matches(crash_point::kSaving, 0));
  const auto unknown = CrashPoints::Parse("teardown", "");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("known: teardown-confirmed"), std::string::npos)
      << unknown.status().message();
  EXPECT_FALSE(CrashPoints::Parse("saving@", "").ok());
  EXPECT_FALSE(CrashPoints::Parse("saving@x", "").ok());
  EXPECT_FALSE(CrashPoints::Parse("saving@-1", "").ok());
}

// Forks a child that reaches `point` of generation 0; returns its wait status.
int ReachInChild(const CrashPoints& points, std::string_view point) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    points.Reach(point, 0);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(VigildCrashPoints, AnArmedPointKillsOnceAndOnlyThere) {
  testing::TempDir dir;
  const std::string once = dir / "fired";
  auto c = CrashPoints::Parse("checkpoint-reported@0", once);
  ASSERT_TRUE(c.ok());
  // Another point: the child lives.
  int status = ReachInChild(c.value(), crash_point::kSaving);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(std::filesystem::exists(once));
  // The point: SIGKILL, and the once-file made.
  status = ReachInChild(c.value(), crash_point::kCheckpointReported);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(std::filesystem::exists(once));
  // The process after it (the vigild taking over) passes the point and lives.
  status = ReachInChild(c.value(), crash_point::kCheckpointReported);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace vigil
