// The real Slurm cluster the Slurm tests run on (slurm_cluster.h), and what
// vigil's Slurm launcher relies on it to do, checked against the daemons
// themselves:
//  - a job step's tasks run on their nodes, each in its own namespace with
//    its node's address (what an agent started by srun binds);
//  - a drain carries its reason to `sinfo -R`, whole (what an on-call
//    engineer reads);
//  - an allocation made with --no-kill outlives a node killed under it: the
//    other nodes' steps (one per node, as vigil starts its agents) run on,
//    and Slurm declares the dead node DOWN after its SlurmdTimeout.
// One cluster serves every test of the binary, these and vigil's own under
// Slurm (slurm_launcher_test.cc): ctest runs it once.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>

#include "tests/integration/slurm_fixture.h"

namespace vigil {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::SlurmCluster;

// The cluster of every Slurm test of the binary (slurm_launcher_test.cc's too).
::testing::Environment* const kCluster =
    ::testing::AddGlobalTestEnvironment(new testing::SlurmEnvironment);

using Slurm = testing::SlurmTest;

TEST_F(Slurm, EveryNodeRunsItsTasksInItsOwnNamespace) {
  const auto r = SlurmCluster::Sh(
      "srun -N3 --ntasks-per-node=1 sh -c "
      "'echo \"$SLURMD_NODENAME $(ip -4 -o addr show dev eth0 | awk \"{print \\$4}\")\"' 2>&1");
  ASSERT_EQ(r.code, 0) << r.out;
  for (int i = 0; i < C().size(); ++i) {
    EXPECT_NE(r.out.find(C().Node(i) + " " + C().net().Address(i) + "/24\n"), std::string::npos)
        << r.out;
  }
}

TEST_F(Slurm, ADrainCarriesItsReasonToSinfo) {
  const std::string reason = "vigil: event#3 host_lost (longer than the column sinfo -R shows)";
  const auto drain = SlurmCluster::Sh("scontrol update NodeName=" + C().Node(1) +
                                      " State=DRAIN Reason='" + reason + "' 2>&1");
  ASSERT_EQ(drain.code, 0) << drain.out;
  const auto listed = SlurmCluster::Sh("sinfo -R -h -o '%N|%E' 2>&1");
  EXPECT_NE(listed.out.find(C().Node(1) + "|" + reason), std::string::npos) << listed.out;
  ASSERT_EQ(SlurmCluster::Sh("scontrol update NodeName=" + C().Node(1) + " State=RESUME").code, 0);
}

TEST_F(Slurm, ANoKillAllocationOutlivesAKilledNode) {
  // One step per node, each a task that marks where it runs and stays.
  const std::string d = C().dir() + "/outlives";
  std::filesystem::create_directories(d);
  std::ofstream(d + "/job.sh")
      << "#!/bin/sh\n"
      << "for n in $(scontrol show hostnames \"$SLURM_JOB_NODELIST\"); do\n"
      << "  srun -N1 -n1 -w \"$n\" --kill-on-bad-exit=0 sh -c 'touch " << d
      << "/up-$SLURMD_NODENAME; exec sleep 600' &\n"
      << "done\nwait\n";
  const auto submitted = SlurmCluster::Sh(
      "sbatch --parsable --no-kill -N3 --ntasks-per-node=1 -o " + d + "/out " + d + "/job.sh 2>&1");
  ASSERT_EQ(submitted.code, 0) << submitted.out;
  const std::string job = submitted.out.substr(0, submitted.out.find_first_of("\n;"));
  auto all_up = [&] {
    for (int i = 0; i < C().size(); ++i) {
      if (!std::filesystem::exists(d + "/up-" + C().Node(i))) return false;
    }
    return true;
  };
  for (int i = 0; i < 200 && !all_up(); ++i) std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(all_up()) << testing::Slurp(d + "/out");

  const auto killed_at = std::chrono::steady_clock::now();
  C().KillNode(1);
  std::string state;
  double down_s = -1;
  for (int i = 0; i < 600 && down_s < 0; ++i) {
    state = SlurmCluster::Sh("sinfo -h -n " + C().Node(1) + " -o %T").out;
    if (state.rfind("down", 0) == 0)
      down_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
    else
      std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_GE(down_s, 0) << "never down: " << state;
  // The allocation and the other nodes' steps outlived it.
  EXPECT_EQ(SlurmCluster::Sh("squeue -h -j " + job + " -o %T").out, "RUNNING\n");
  const std::string steps = SlurmCluster::Sh("squeue -h -s -j " + job + " -o %N").out;
  EXPECT_NE(steps.find(C().Node(0) + "\n"), std::string::npos) << steps;
  EXPECT_NE(steps.find(C().Node(2) + "\n"), std::string::npos) << steps;
  std::printf("figure: node killed -> DOWN in Slurm after %.1f s (SlurmdTimeout %d s)\n", down_s,
              SlurmCluster::kSlurmdTimeoutS);
  ASSERT_EQ(SlurmCluster::Sh("scancel " + job).code, 0);
  for (int i = 0; i < 300 && !SlurmCluster::Sh("squeue -h -j " + job + " 2>/dev/null").out.empty();
       ++i)
    std::this_thread::sleep_for(milliseconds(100));
  ASSERT_TRUE(C().RestartNode(1).ok());
}

}  // namespace
}  // namespace vigil
