// The drain executor's logic (slurm_drainer.h) against a stand-in for
// scontrol: a script that records its arguments and answers as told. The
// real scontrol, against a real slurmctld, is slurm_launcher_test.cc's.
// Also RunProcess (common/process.h), which it runs scontrol with.
#include "coordinator/slurm_drainer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <thread>

#include "common/fs.h"
#include "common/process.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using coordinator::SlurmDrainer;
using std::chrono::milliseconds;
using testing::TempDir;

TEST(RunProcess, CapturesOutputAndExitStatus) {
  SpawnOptions o;
  o.argv = {"sh", "-c", "echo out; echo err >&2; exit 3"};
  auto r = RunProcess(o, milliseconds(5000));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->Describe(), "exited 3");
  EXPECT_EQ(r->output, "out\nerr\n");
}

TEST(RunProcess, KillsAProgramPastItsTimeout) {
  SpawnOptions o;
  o.argv = {"sleep", "30"};
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunProcess(o, milliseconds(200));
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(RunProcess, NamesAProgramThatIsNotOnPath) {
  SpawnOptions o;
  o.argv = {"vigil-no-such-program"};
  auto r = RunProcess(o, milliseconds(1000));
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("vigil-no-such-program is not on PATH"), std::string::npos);
  EXPECT_EQ(FindExecutable("sh").value().back(), 'h');
}

class Drainer : public ::testing::Test {
 protected:
  // A stand-in scontrol: records its arguments, one per line, then runs `then`.
  std::string Scontrol(const std::string& then) {
    const std::string path = dir_ / "scontrol";
    std::ofstream(path) << "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > " << (dir_ / "args")
                        << "\n"
                        << then << "\n";
    ::chmod(path.c_str(), 0755);
    return path;
  }
  SlurmDrainer::Outcome Drain(const std::string& scontrol, milliseconds timeout) {
    boost::asio::io_context io;
    SlurmDrainer drainer(io, timeout, scontrol);
    auto busy = boost::asio::make_work_guard(io);  // as vigild's loop always is
    std::optional<SlurmDrainer::Outcome> got;
    drainer.Drain({7, "n3", "host_lost"}, [&](const SlurmDrainer::Outcome& o) {
      got = o;
      io.stop();
    });
    io.run_for(std::chrono::seconds(20));
    EXPECT_TRUE(got);
    return got.value_or(SlurmDrainer::Outcome{});
  }
  TempDir dir_;
};

TEST_F(Drainer, DrainsTheNodeWithTheEventAsItsReason) {
  const auto o = Drain(Scontrol("exit 0"), milliseconds(5000));
  EXPECT_TRUE(o.drained) << o.detail;
  EXPECT_EQ(o.reason, "vigil: event#7 host_lost");
  EXPECT_EQ(o.command,
            "scontrol update NodeName=n3 State=DRAIN Reason=\"vigil: event#7 host_lost\"");
  auto args = ReadFile(dir_ / "args");
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(args.value(), "update\nNodeName=n3\nState=DRAIN\nReason=vigil: event#7 host_lost\n");
}

TEST_F(Drainer, AFailedScontrolIsReportedWithWhatItSaid) {
  const auto o =
      Drain(Scontrol("echo 'slurm_update error: Invalid node name specified' >&2; exit 1"),
            milliseconds(5000));
  EXPECT_FALSE(o.drained);
  EXPECT_EQ(o.detail, "scontrol exited 1: slurm_update error: Invalid node name specified");
}

// The stand-in hangs in a child of its own (as scontrol's wrappers may):
// the kill at the timeout takes the whole process group.
TEST_F(Drainer, AScontrolThatHangsIsKilledAtItsTimeoutWithItsChildren) {
  const auto o = Drain(Scontrol("sleep 3117; :"), milliseconds(300));
  EXPECT_FALSE(o.drained);
  EXPECT_NE(o.detail.find("did not finish within 300 ms"), std::string::npos) << o.detail;
  EXPECT_LT(o.elapsed_ms, 5000);
  bool child_gone = false;
  for (int i = 0; i < 100 && !child_gone; ++i) {
    child_gone = std::system("pgrep -x -f 'sleep 3117' > /dev/null") != 0;
    if (!child_gone) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(child_gone) << "scontrol's child outlived the kill at its timeout";
}

TEST_F(Drainer, AMissingScontrolIsReported) {
  const auto o = Drain(dir_ / "nowhere/scontrol", milliseconds(1000));
  EXPECT_FALSE(o.drained);
  EXPECT_FALSE(o.detail.empty());
}

}  // namespace
}  // namespace vigil
