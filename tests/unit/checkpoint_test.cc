#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "checkpoint/async_writer.h"
#include "checkpoint/fault_storage.h"
#include "checkpoint/layout.h"
#include "checkpoint/retention.h"
#include "common/fs.h"
#include "common/partition.h"
#include "tests/unit/test_util.h"

namespace vigil::checkpoint {
namespace {

using vigil::testing::TempDir;
namespace fs = std::filesystem;

// A small state shaped like a real MoE model's: three dense tensors, then two
// experts of two tensors each; three sections (params and AdamW's moments).
struct TestState {
  std::vector<TensorInfo> tensors = {{"embed", {7, 5}, 0},     {"ln.w", {13}, 35},
                                     {"mlp.w", {3, 4, 4}, 48}, {"expert0.w", {6, 3}, 96},
                                     {"expert0.b", {4}, 114},  {"expert1.w", {6, 3}, 118},
                                     {"expert1.b", {4}, 136}};
  StateLayout layout{96, 2, 22, "auto", "cpu"};
  int64_t P = 140;
  std::vector<std::string> sections = {"params", "adam_m", "adam_v"};
  std::vector<float> values;  // section after section

  TestState() {
    values.resize(3 * P);
    for (int64_t i = 0; i < 3 * P; ++i) values[i] = static_cast<float>(i) * 0.5f - 7.0f;
  }
};

// Writes and commits a checkpoint as `world` ranks would, through `storage`.
Result<std::string> WriteCheckpoint(Storage* storage, const std::string& root, int64_t step,
                                    int world, const TestState& s) {
  Manifest m;
  m.step = step;
  m.tokens_seen = step * 100;
  m.data_loader = {9, step * 4, 4};
  m.rng_seed = 9;
  m.optimizer = "adamw";
  m.optimizer_step = step;
  m.config_hash = "cafe";
  m.world_size = world;
  m.layout = s.layout;
  m.param_count = s.P;
  m.sections = s.sections;
  std::vector<ShardReport> reports(world);
  const std::string tmp = root + "/" + StepDirName(step) + ".tmp";
  for (int r = 0; r < world; ++r) {
    reports[r].ranges = OwnedRanges(s.layout, r, world);
    std::vector<ShardPiece> pieces;
    for (int sec = 0; sec < 3; ++sec)
      for (const auto& range : reports[r].ranges)
        pieces.push_back({s.values.data() + sec * s.P + range.begin, range.size()});
    auto sums = WriteShard(storage, tmp + "/" + ShardFileName(r),
                           PlanShard(s.tensors, 3, reports[r].ranges), pieces);
    if (!sums.ok()) return sums.status();
    reports[r].checksums = sums.value();
  }
  VIGIL_RETURN_IF_ERROR(DescribeShards(&m, s.tensors, reports));
  return CommitCheckpoint(storage, root, m);
}

std::string MustWrite(const std::string& root, int64_t step, int world, const TestState& s) {
  auto dir = WriteCheckpoint(Storage::Default(), root, step, world, s);
  EXPECT_TRUE(dir.ok()) << dir.status().ToString();
  return dir.ok() ? dir.value() : "";
}

std::unique_ptr<CheckpointReader> MustOpen(const std::string& dir) {
  auto reader = CheckpointReader::Open(Storage::Default(), dir);
  EXPECT_TRUE(reader.ok()) << reader.status().ToString();
  return reader.ok() ? std::move(reader.value()) : nullptr;
}

TEST(Checkpoint, RoundTripsAcrossShards) {
  TempDir root;
  TestState s;
  for (int world : {1, 2, 3}) {
    const std::string dir = MustWrite(root.path(), 40 + world, world, s);
    EXPECT_EQ(fs::path(dir).filename(), StepDirName(40 + world));
    EXPECT_FALSE(fs::exists(dir + ".tmp"));
    auto reader = MustOpen(dir);
    ASSERT_TRUE(reader);
    for (int sec = 0; sec < 3; ++sec) {
      auto got = reader->ReadSection(s.sections[sec]);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got.value(), std::vector<float>(s.values.begin() + sec * s.P,
                                                s.values.begin() + (sec + 1) * s.P));
    }
    EXPECT_EQ(reader->manifest().world_size, world);
    EXPECT_EQ(reader->manifest().total_bytes(), static_cast<int64_t>(s.values.size() * 4));
    EXPECT_TRUE(VerifyCheckpoint(Storage::Default(), dir).ok());
  }
}

// Each tensor of each section is listed with the slices each shard holds.
TEST(Checkpoint, ManifestListsEveryTensorsSlices) {
  TempDir root;
  TestState s;
  auto reader = MustOpen(MustWrite(root.path(), 1, 2, s));
  ASSERT_TRUE(reader);
  const Manifest& m = reader->manifest();
  ASSERT_EQ(m.tensors.size(), 3 * s.tensors.size());
  // World 2 with 2 experts: expert parallel, rank r holds expert r whole and
  // half of the dense region, so "ln.w" [35, 48) is cut at 48 (no cut) and
  // "embed" [0, 35) lies in rank 0's half.
  const TensorEntry& embed = m.tensors[0];
  EXPECT_EQ(embed.full_name(), "params/embed");
  EXPECT_EQ(embed.shape, (std::vector<int64_t>{7, 5}));
  ASSERT_EQ(embed.slices.size(), 1u);
  EXPECT_EQ(embed.slices[0].shard, 0);
  const TensorEntry& mlp = m.tensors[2];  // [48, 96) cut at 48: all on rank 1
  ASSERT_EQ(mlp.slices.size(), 1u);
  EXPECT_EQ(mlp.slices[0].shard, 1);
  const TensorEntry& e1 = m.tensors[5];  // expert1.w on rank 1
  ASSERT_EQ(e1.slices.size(), 1u);
  EXPECT_EQ(e1.slices[0].shard, 1);
  EXPECT_EQ(m.tensors[7].full_name(), "adam_m/embed");
}

TEST(Checkpoint, PlanCutsRangesAtTensorBoundaries) {
  TestState s;
  const auto plan = PlanShard(s.tensors, 2, {{30, 50}, {118, 122}});
  // Section 0: embed [30, 35), ln.w [0, 13), mlp.w [0, 2); expert1.w [0, 4). Then section 1.
  ASSERT_EQ(plan.size(), 8u);
  EXPECT_EQ(plan[0].tensor, 0);
  EXPECT_EQ(plan[0].begin, 30);
  EXPECT_EQ(plan[0].end, 35);
  EXPECT_EQ(plan[2].tensor, 2);
  EXPECT_EQ(plan[2].end, 2);
  EXPECT_EQ(plan[3].tensor, 5);
  EXPECT_EQ(plan[3].file_offset, 20 * 4);
  EXPECT_EQ(plan[4].section, 1);
  EXPECT_EQ(plan[4].file_offset, 24 * 4);
}

TEST(Checkpoint, PiecesMustHoldWhatThePlanSays) {
  TempDir root;
  TestState s;
  std::vector<float> v(10, 1.0f);
  auto sums = WriteShard(Storage::Default(), root / "shard-0.bin",
                         PlanShard(s.tensors, 2, {{0, 10}}), {{v.data(), 10}});
  ASSERT_FALSE(sums.ok());
  EXPECT_NE(sums.status().message().find("the plan 20"), std::string::npos);
}

// A rank reads only the slices that hold what it needs, at any world size.
TEST(Checkpoint, PartialReadsTouchOnlyTheirSlices) {
  TempDir root;
  TestState s;
  auto reader = MustOpen(MustWrite(root.path(), 2, 3, s));
  ASSERT_TRUE(reader);
  std::vector<float> got(20);
  ASSERT_TRUE(reader->Read(1, 100, 120, got.data()).ok());
  EXPECT_EQ(got, std::vector<float>(s.values.begin() + s.P + 100, s.values.begin() + s.P + 120));
  EXPECT_LT(reader->bytes_read(), 60 * 4);
  EXPECT_FALSE(reader->Read(3, 0, 1, got.data()).ok());
  EXPECT_FALSE(reader->Read(0, 130, 141, got.data()).ok());
}

// The placement rule: ZeRO slices of the dense region plus whole experts
// when the world divides them, balanced slices of everything otherwise.
TEST(Checkpoint, OwnedRangesTileTheStateAtEveryWorldSize) {
  TestState s;
  for (int world : {1, 2, 3, 4, 7}) {
    std::vector<IndexRange> all;
    for (int r = 0; r < world; ++r)
      for (const auto& range : OwnedRanges(s.layout, r, world)) all.push_back(range);
    std::sort(all.begin(), all.end(),
              [](const IndexRange& a, const IndexRange& b) { return a.begin < b.begin; });
    int64_t next = 0;
    for (const auto& range : all) {
      EXPECT_EQ(range.begin, next) << "world " << world;
      next = range.end;
    }
    EXPECT_EQ(next, s.P) << "world " << world;
  }
  EXPECT_TRUE(ExpertsSharded(s.layout, 2));
  EXPECT_FALSE(ExpertsSharded(s.layout, 3));
  EXPECT_FALSE(ExpertsSharded(s.layout, 1));
  EXPECT_EQ(OwnedRanges(s.layout, 1, 2).back().begin, 118);
}

class CheckpointCorruption : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MustWrite(root_.path(), 10, 2, s_); }
  // Corruption is caught at Open or at the first read of the bad slice, and
  // the message names what failed.
  void ExpectRejected(const std::string& what, const std::string& named) {
    Status st = VerifyCheckpoint(Storage::Default(), dir_);
    ASSERT_FALSE(st.ok()) << "corruption not detected: " << what;
    EXPECT_EQ(st.code(), StatusCode::kCorruption) << st.ToString();
    EXPECT_NE(st.message().find(named), std::string::npos) << st.ToString();
  }
  void EditManifest(const std::string& from, const std::string& to) {
    auto text = ReadFile(dir_ + "/manifest.json").value();
    const auto at = text.find(from);
    ASSERT_NE(at, std::string::npos) << from << " not in\n" << text;
    text.replace(at, from.size(), to);
    std::ofstream(dir_ + "/manifest.json") << text;
  }
  TempDir root_;
  TestState s_;
  std::string dir_;
};

TEST_F(CheckpointCorruption, FlippedByteNamesShardAndTensor) {
  // Shard 1 holds the dense floats [48, 96) and then expert 1 [118, 140):
  // float 52 of the file is expert1.w's element 4.
  std::fstream f(dir_ + "/shard-1.bin", std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(4 * 52 + 1);
  char c = 0;
  f.read(&c, 1);
  f.seekp(4 * 52 + 1);
  c ^= 0x01;
  f.write(&c, 1);
  f.close();
  ExpectRejected("flipped byte", "shard-1.bin, tensor params/expert1.w");
  // Reading other tensors still works: the damage is located, not global.
  auto reader = MustOpen(dir_);
  std::vector<float> embed(35);
  EXPECT_TRUE(reader->Read(0, 0, 35, embed.data()).ok());
}

TEST_F(CheckpointCorruption, TruncatedShard) {
  fs::resize_file(dir_ + "/shard-0.bin", 100);
  ExpectRejected("truncated shard", "shard-0.bin has 100 bytes");
}

TEST_F(CheckpointCorruption, MissingShard) {
  fs::remove(dir_ + "/shard-1.bin");
  ExpectRejected("missing shard", "shard-1.bin is missing");
}

TEST_F(CheckpointCorruption, GarbledManifest) {
  std::ofstream(dir_ + "/manifest.json") << "{\"format_version\": 3, \"step\": ";
  ExpectRejected("garbled manifest", "bad manifest");
}

TEST_F(CheckpointCorruption, MissingManifest) {
  fs::remove(dir_ + "/manifest.json");
  ExpectRejected("missing manifest", "manifest.json is missing");
}

TEST_F(CheckpointCorruption, OverlappingTensors) {
  EditManifest("\"offset\": 118", "\"offset\": 117");
  ExpectRejected("overlapping tensors", "the tensors of params overlap or leave gaps");
}

TEST_F(CheckpointCorruption, SliceBeyondItsTensor) {
  EditManifest("\"end\": 35", "\"end\": 36");
  ExpectRejected("slice beyond its tensor", "outside the tensor or its file");
}

TEST_F(CheckpointCorruption, TensorOutsideTheParameters) {
  EditManifest("\"offset\": 136", "\"offset\": 137");
  ExpectRejected("tensor beyond the parameters", "lies outside the parameters");
}

TEST_F(CheckpointCorruption, ChecksumThatIsNotHex) {
  EditManifest("\"xxh3\": \"", "\"xxh3\": \"zz");
  ExpectRejected("bad checksum text", "malformed checksum");
}

TEST_F(CheckpointCorruption, OlderFormatVersion) {
  EditManifest("\"format_version\": 3", "\"format_version\": 2");
  ExpectRejected("older format", "format_version 2");
}

TEST_F(CheckpointCorruption, ManifestPointingOutsideItsDirectory) {
  auto text = ReadFile(dir_ + "/manifest.json").value();
  for (size_t at; (at = text.find("shard-0.bin")) != std::string::npos;)
    text.replace(at, 11, "../../etc/passwd");
  std::ofstream(dir_ + "/manifest.json") << text;
  ExpectRejected("path escape", "not a plain file name");
}

TEST(Checkpoint, UncommittedDirectoriesAreNeverLoadedAndAreCleanedUp) {
  TempDir root;
  TestState s;
  const std::string tmp = root / (StepDirName(5) + ".tmp");
  std::vector<float> v(s.P, 1.0f);
  ASSERT_TRUE(WriteShard(Storage::Default(), tmp + "/shard-0.bin",
                         PlanShard(s.tensors, 1, {{0, s.P}}), {{v.data(), s.P}})
                  .ok());
  EXPECT_FALSE(CheckpointReader::Open(Storage::Default(), tmp).ok());
  auto listed = ListCommitted(Storage::Default(), root.path());
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  ASSERT_TRUE(RemoveIncomplete(Storage::Default(), root.path()).ok());
  EXPECT_FALSE(fs::exists(tmp));
}

TEST(Checkpoint, ListsCommittedNewestFirst) {
  TempDir root;
  TestState s;
  for (int64_t step : {20, 100, 3}) MustWrite(root.path(), step, 1, s);
  fs::create_directory(root / "step-00000500");  // no manifest: not committed
  fs::create_directory(root / "notes");
  auto listed = ListCommitted(Storage::Default(), root.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ(fs::path((*listed)[0]).filename(), "step-00000100");
  EXPECT_EQ(fs::path((*listed)[2]).filename(), "step-00000003");
}

// The commit protocol against a power loss at each of its steps: after the
// unsynced data is dropped, the newest checkpoint is either the old one or
// the new one, complete, and it verifies; never a torn one.
TEST(CheckpointCrash, PowerLossAtEveryStepOfTheCommitLeavesNoTornCheckpoint) {
  TestState s;
  // Record the protocol once.
  std::vector<std::string> protocol;
  {
    TempDir root;
    FaultInjectionStorage recorder;
    MustWrite(root.path(), 1, 2, s);
    ASSERT_TRUE(WriteCheckpoint(&recorder, root.path(), 2, 2, s).ok());
    protocol = recorder.trace();
  }
  ASSERT_GT(protocol.size(), 10u);
  int committed = 0;
  for (size_t op = 0; op <= protocol.size(); ++op) {
    TempDir root;
    MustWrite(root.path(), 1, 2, s);
    FaultInjectionStorage storage;
    storage.CrashAt(static_cast<int>(op));
    auto dir = WriteCheckpoint(&storage, root.path(), 2, 2, s);
    EXPECT_EQ(dir.ok(), op == protocol.size()) << "crash before " << op;
    ASSERT_TRUE(storage.DropUnsyncedData().ok());
    ASSERT_TRUE(RemoveIncomplete(Storage::Default(), root.path()).ok());
    auto listed = ListCommitted(Storage::Default(), root.path());
    ASSERT_TRUE(listed.ok());
    ASSERT_FALSE(listed->empty());
    const std::string newest = listed->front();
    Status st = VerifyCheckpoint(Storage::Default(), newest);
    EXPECT_TRUE(st.ok()) << "crash before op " << op << " ("
                         << (op < protocol.size() ? protocol[op] : "none")
                         << ") left a torn checkpoint: " << st.ToString();
    if (fs::path(newest).filename() == StepDirName(2)) ++committed;
  }
  // Only the crash after the last operation (none) leaves step 2 behind:
  // the parent's sync is the commit point.
  EXPECT_EQ(committed, 1);
}

TEST(CheckpointFaults, AFullDiskFailsTheSaveAndLeavesOlderCheckpoints) {
  TempDir root;
  TestState s;
  const std::string old_dir = MustWrite(root.path(), 1, 2, s);
  FaultInjectionStorage storage;
  storage.FailWritesAfter(200);
  auto dir = WriteCheckpoint(&storage, root.path(), 2, 2, s);
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("No space left on device"), std::string::npos)
      << dir.status().ToString();
  ASSERT_TRUE(RemoveIncomplete(Storage::Default(), root.path()).ok());
  auto listed = ListCommitted(Storage::Default(), root.path());
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(*listed, std::vector<std::string>{old_dir});
  EXPECT_TRUE(VerifyCheckpoint(Storage::Default(), old_dir).ok());
}

// The writer copies the pieces before the caller may change them: what lands
// on disk is the state at Start(), whatever the training thread does after
// WaitSnapshot(). One shard at a time; the buffer is reused.
TEST(AsyncShardWriter, WritesTheSnapshotNotTheLaterState) {
  TempDir root;
  TestState s;
  const auto plan = PlanShard(s.tensors, 1, {{0, s.P}});
  auto expected = WriteShard(Storage::Default(), root / "sync.bin", plan, {{s.values.data(), s.P}});
  ASSERT_TRUE(expected.ok());
  std::vector<float> live(s.values.begin(), s.values.begin() + s.P);
  AsyncShardWriter writer;
  EXPECT_FALSE(writer.busy());
  writer.WaitSnapshot();  // nothing in flight: returns at once
  writer.Start(Storage::Default(), root / "async.bin", plan, {{live.data(), s.P}});
  EXPECT_TRUE(writer.busy());
  EXPECT_THROW(writer.Start(Storage::Default(), root / "again.bin", plan, {{live.data(), s.P}}),
               std::logic_error);
  writer.WaitSnapshot();
  std::fill(live.begin(), live.end(), 42.0f);  // the optimizer step
  auto sums = writer.Wait();
  ASSERT_TRUE(sums.ok()) << sums.status().ToString();
  EXPECT_EQ(sums.value(), expected.value());
  EXPECT_EQ(ReadFile(root / "async.bin").value(), ReadFile(root / "sync.bin").value());
  EXPECT_FALSE(writer.busy());
  EXPECT_EQ(writer.buffer_bytes(), static_cast<size_t>(s.P) * sizeof(float));

  // A failing disk fails the shard, reported by Wait(); the writer goes on.
  FaultInjectionStorage full;
  full.FailWritesAfter(10);
  writer.Start(&full, root / "full.bin", plan, {{live.data(), s.P}});
  auto failed = writer.Wait();
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("No space left on device"), std::string::npos);
  // And the commit task runs on the writer thread too.
  writer.StartCommit([] { return Result<std::string>(std::string("committed")); });
  EXPECT_TRUE(writer.committing());
  auto committed = writer.WaitCommit();
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed.value(), "committed");
}

TEST(Retention, KeepsTheNewestTheArchiveAndTheProtected) {
  const std::vector<int64_t> steps = {10, 20, 30, 40, 50, 60, 70};
  EXPECT_EQ(RetentionVictims(steps, 2, 0, {}), (std::vector<int64_t>{10, 20, 30, 40, 50}));
  EXPECT_EQ(RetentionVictims(steps, 2, 30, {}), (std::vector<int64_t>{10, 20, 40, 50}));
  // The checkpoint a generation is restoring from stays, however old.
  EXPECT_EQ(RetentionVictims(steps, 2, 30, {20}), (std::vector<int64_t>{10, 40, 50}));
  EXPECT_TRUE(RetentionVictims({5}, 1, 0, {}).empty());
  // keep_last 0 would delete the newest: it counts as 1.
  EXPECT_EQ(RetentionVictims({5, 6}, 0, 0, {}), (std::vector<int64_t>{5}));
}

}  // namespace
}  // namespace vigil::checkpoint
