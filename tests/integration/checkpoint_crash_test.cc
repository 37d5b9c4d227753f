// Crash-point tests: a 2-rank training run (threads over real Gloo) saves
// checkpoints through a FaultInjectionStorage, and is interrupted at every
// step of the commit protocol:
//   * killed: a child process (this binary, re-executed) trains and raises
//     SIGKILL in place of the N-th storage operation; whatever the kernel
//     had accepted survives, as after a real crash of the process;
//   * powered off: the storage goes dead at the N-th operation, then every
//     byte that was never synced (file data, directory entries, renames) is
//     dropped, as after a power loss.
// After each, the newest committed checkpoint must verify (a torn one is
// never committed), and resuming from it to the end of the schedule must
// give exactly the parameters of an uninterrupted run.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/fault_storage.h"
#include "common/job_spec.h"
#include "common/util.h"
#include "tests/unit/gloo_world.h"
#include "tests/unit/test_util.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/trainer.h"

extern char** environ;

namespace vigil {
namespace {

namespace ck = checkpoint;
using testing::RunWorld;
using testing::TempDir;

constexpr int kWorld = 2, kSteps = 6, kSaveEvery = 2;

JobSpec Spec() {
  auto spec = ParseJobSpec(
      "name: crash\n"
      "model: {vocab: 32, d_model: 16, layers: 2, heads: 2, seq_len: 8}\n"
      "data: {seed: 11}\n"
      "optimizer: {lr: 0.01, weight_decay: 0.1}\n"
      "schedule: {steps: 6, batch_per_rank: 2, warmup_steps: 1}\n"
      "world: {hosts: 1, ranks_per_host: 2}\n",
      "crash.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  return spec.value();
}

// Trains to the end of the schedule as vigil-train does (a save every
// kSaveEvery steps and at the end, asynchronous, at most one in flight),
// after resuming from `resume` if given. Returns the final params digest.
std::string Train(ck::Storage* storage, const std::string& root, const std::string& resume) {
  const JobSpec spec = Spec();
  auto data = trainer::MakeDataSource(spec);
  std::string digest;
  RunWorld(kWorld, [&](trainer::Collectives& c) {
    trainer::TrainerOptions opts;
    opts.checkpoint_dir = root;
    opts.storage = storage;
    opts.async_save = true;
    trainer::Trainer t(spec, opts, *data.value(), &c,
                       MakeLogger("crash." + std::to_string(c.rank())));
    if (resume.empty()) {
      t.Initialize();
    } else {
      Status st = t.Resume(resume);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
    while (!t.done()) {
      t.Step();
      const bool save_now = t.step() % kSaveEvery == 0 || t.done();
      (void)t.FinishSave(save_now);
      if (save_now) t.BeginSave();
    }
    (void)t.FinishSave(true);
    const std::string d = t.ParamsDigest();
    if (c.rank() == 0) digest = d;
  });
  return digest;
}

// What a restart does: clear debris, take the newest committed checkpoint.
// It must verify: the commit protocol never leaves a torn committed one.
std::string ResumeAfterCrash(const std::string& root, const std::string& what) {
  EXPECT_TRUE(ck::RemoveIncomplete(ck::Storage::Default(), root).ok());
  auto committed = ck::ListCommitted(ck::Storage::Default(), root);
  EXPECT_TRUE(committed.ok());
  if (!committed.ok() || committed->empty()) return Train(ck::Storage::Default(), root, "");
  Status st = ck::VerifyCheckpoint(ck::Storage::Default(), committed->front());
  EXPECT_TRUE(st.ok()) << what << " left a torn committed checkpoint: " << st.ToString();
  return Train(ck::Storage::Default(), root, committed->front());
}

struct Protocol {
  std::string digest;
  std::vector<std::string> ops;
};

// The uninterrupted run, and the storage operations its saves make.
const Protocol& Uninterrupted() {
  static const Protocol* p = [] {
    TempDir root;
    ck::FaultInjectionStorage recorder;
    auto* out = new Protocol;
    out->digest = Train(&recorder, root.path(), "");
    out->ops = recorder.trace();
    return out;
  }();
  return *p;
}

// Every operation but the appends in the middle of a file: the first and the
// last append to each file stay, so a crash lands before, inside and after
// each file's data as well as at every create, sync, rename and directory sync.
std::vector<int> CrashPoints(const std::vector<std::string>& ops) {
  std::vector<int> out;
  for (size_t i = 0; i < ops.size(); ++i) {
    const bool append = ops[i].rfind("append ", 0) == 0;
    const bool first = append && (i == 0 || ops[i - 1] != ops[i]);
    const bool last = append && (i + 1 == ops.size() || ops[i + 1] != ops[i]);
    if (!append || first || last) out.push_back(static_cast<int>(i));
  }
  return out;
}

TEST(CrashPoints, ProtocolIsRecorded) {
  const Protocol& p = Uninterrupted();
  EXPECT_EQ(p.digest.size(), 16u);
  int renames = 0, dir_syncs = 0;
  for (const auto& op : p.ops) {
    renames += op.rfind("rename ", 0) == 0;
    dir_syncs += op.rfind("syncdir ", 0) == 0;
  }
  // Three saves (steps 2, 4, 6): the manifest's rename and the directory's
  // rename each, and the syncs of the step directory and of the root.
  EXPECT_EQ(renames, 6);
  EXPECT_EQ(dir_syncs, 6);
  // The same run through the plain disk gives the same parameters.
  TempDir root;
  EXPECT_EQ(Train(ck::Storage::Default(), root.path(), ""), p.digest);
}

TEST(CrashPoints, SigkillAtEveryStepOfTheCommitProtocol) {
  const Protocol& p = Uninterrupted();
  const auto points = CrashPoints(p.ops);
  ASSERT_GT(points.size(), 20u);
  std::printf("%zu crash points among the %zu storage operations of 3 saves\n", points.size(),
              p.ops.size());
  for (int op : points) {
    SCOPED_TRACE("SIGKILL in place of op " + std::to_string(op) + ": " + p.ops[op]);
    TempDir root;
    const std::string arg_op = std::to_string(op), self = "/proc/self/exe";
    const char* argv[] = {self.c_str(), "--crash-child", arg_op.c_str(), root.path().c_str(),
                          nullptr};
    pid_t pid = 0;
    ASSERT_EQ(
        ::posix_spawn(&pid, self.c_str(), nullptr, nullptr, const_cast<char**>(argv), environ), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    // Threads interleave differently in the child, so op N may fall on
    // another operation than in the recording, but it always falls.
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    EXPECT_EQ(ResumeAfterCrash(root.path(), "SIGKILL"), p.digest);
  }
}

TEST(CrashPoints, PowerLossAtEveryStepOfTheCommitProtocol) {
  const Protocol& p = Uninterrupted();
  for (int op : CrashPoints(p.ops)) {
    SCOPED_TRACE("power lost at op " + std::to_string(op) + ": " + p.ops[op]);
    TempDir root;
    ck::FaultInjectionStorage storage;
    storage.CrashAt(op);
    // The run goes on with a dead disk (every later save fails), then the
    // machine "reboots": what was never synced is gone.
    Train(&storage, root.path(), "");
    ASSERT_TRUE(storage.dead());
    ASSERT_TRUE(storage.DropUnsyncedData().ok());
    EXPECT_EQ(ResumeAfterCrash(root.path(), "power loss"), p.digest);
  }
}

// The child: trains and dies by SIGKILL at storage operation `op`.
int CrashChild(int op, const std::string& root) {
  ck::FaultInjectionStorage storage;
  storage.CrashAt(op, [] { ::raise(SIGKILL); });
  Train(&storage, root, "");
  return 3;  // not reached when the crash point exists
}

}  // namespace
}  // namespace vigil

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "--crash-child") == 0)
    return vigil::CrashChild(std::atoi(argv[2]), argv[3]);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
