#include "checkpoint/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/fs.h"
#include "common/partition.h"
#include "tests/unit/test_util.h"

namespace vigil::checkpoint {
namespace {

using vigil::testing::TempDir;
namespace fs = std::filesystem;

// The ranges rank r owns, shaped like a real MoE run: a balanced slice of the
// replicated first half (ZeRO) and a slice of the second half (its experts).
std::vector<IndexRange> RangesOf(int64_t n, int r, int world) {
  IndexRange dense, experts;
  BalancedRange(n / 2, r, world, &dense.begin, &dense.end);
  BalancedRange(n - n / 2, r, world, &experts.begin, &experts.end);
  experts.begin += n / 2;
  experts.end += n / 2;
  std::vector<IndexRange> out;
  for (const auto& range : {dense, experts})
    if (range.size() > 0) out.push_back(range);
  return out;
}

// Writes a checkpoint of `world` shards of a state of 3 sections of n floats, as the ranks would.
std::string WriteCheckpoint(const std::string& root, int64_t step, int world, int64_t n,
                            std::vector<float>* state) {
  state->resize(3 * n);
  for (int64_t i = 0; i < 3 * n; ++i) (*state)[i] = static_cast<float>(i) * 0.5f - 7.0f;
  Manifest m;
  m.step = step;
  m.tokens_seen = step * 100;
  m.data_position = step * 4;
  m.seed = 9;
  m.optimizer = "adamw";
  m.config_hash = "cafe";
  m.world_size = world;
  m.param_count = n;
  m.sections = {"params", "adam_m", "adam_v"};
  m.tensors = {{"w", {n}, 0}};
  const std::string tmp = root + "/" + StepDirName(step) + ".tmp";
  for (int r = 0; r < world; ++r) {
    const auto ranges = RangesOf(n, r, world);
    std::vector<ShardPiece> pieces;
    for (int sec = 0; sec < 3; ++sec)
      for (const auto& range : ranges)
        pieces.push_back({state->data() + sec * n + range.begin, range.size()});
    auto shard = WriteShard(tmp, r, 3, ranges, pieces);
    EXPECT_TRUE(shard.ok()) << shard.status().ToString();
    m.shards.push_back(shard.value());
  }
  auto dir = CommitCheckpoint(root, m);
  EXPECT_TRUE(dir.ok()) << dir.status().ToString();
  return dir.value();
}

TEST(Checkpoint, RoundTripsAcrossShards) {
  TempDir root;
  std::vector<float> state;
  const std::string dir = WriteCheckpoint(root.path(), 40, 3, 1001, &state);
  EXPECT_EQ(fs::path(dir).filename(), "step-00000040");
  EXPECT_FALSE(fs::exists(dir + ".tmp"));
  auto loaded = LoadCheckpoint(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->state, state);
  EXPECT_EQ(loaded->manifest.step, 40);
  EXPECT_EQ(loaded->manifest.world_size, 3);
  EXPECT_EQ(loaded->bytes, static_cast<int64_t>(state.size() * sizeof(float)));
}

TEST(Checkpoint, BalancedRangesTileTheState) {
  for (int world : {1, 2, 3, 7}) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      int64_t b = 0, e = 0;
      BalancedRange(100, r, world, &b, &e);
      EXPECT_EQ(b, next);
      EXPECT_LE(e - b, 100 / world + 1);
      next = e;
    }
    EXPECT_EQ(next, 100);
    EXPECT_EQ(BalancedOffsets(100, world).back(), 100);
  }
}

TEST(Checkpoint, ShardPiecesMustMatchTheirRanges) {
  TempDir root;
  std::vector<float> v(10, 1.0f);
  auto shard = WriteShard(root.path(), 0, 2, {{0, 10}}, {{v.data(), 10}});
  ASSERT_FALSE(shard.ok());
  EXPECT_NE(shard.status().message().find("ranges need 20"), std::string::npos);
}

TEST(Checkpoint, SectionsAreFoundByName) {
  TempDir root;
  std::vector<float> state;
  auto loaded = LoadCheckpoint(WriteCheckpoint(root.path(), 3, 2, 10, &state));
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->FindSection("adam_v"), 2);
  EXPECT_EQ(loaded->FindSection("momentum"), -1);
  EXPECT_EQ(loaded->section(2)[0], state[20]);
}

class CheckpointCorruption : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = WriteCheckpoint(root_.path(), 10, 2, 500, &state_); }
  void ExpectRejected(const std::string& what) {
    auto loaded = LoadCheckpoint(dir_);
    ASSERT_FALSE(loaded.ok()) << "corruption not detected: " << what;
    EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption) << loaded.status().ToString();
    EXPECT_FALSE(VerifyCheckpoint(dir_).ok());
  }
  TempDir root_;
  std::vector<float> state_;
  std::string dir_;
};

TEST_F(CheckpointCorruption, FlippedByte) {
  std::fstream f(dir_ + "/shard-1.bin", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(123);
  char c = 0;
  f.read(&c, 1);
  f.seekp(123);
  c ^= 0x01;
  f.write(&c, 1);
  f.close();
  ExpectRejected("flipped byte");
}

TEST_F(CheckpointCorruption, TruncatedShard) {
  fs::resize_file(dir_ + "/shard-0.bin", 100);
  ExpectRejected("truncated shard");
}

TEST_F(CheckpointCorruption, MissingShard) {
  fs::remove(dir_ + "/shard-1.bin");
  ExpectRejected("missing shard");
}

TEST_F(CheckpointCorruption, GarbledManifest) {
  std::ofstream(dir_ + "/manifest.json") << "{\"format_version\": 1, \"step\": ";
  ExpectRejected("garbled manifest");
}

TEST_F(CheckpointCorruption, OverlappingRanges) {
  auto text = ReadFile(dir_ + "/manifest.json").value();
  // Rank 1's first range starts where rank 0's does: [125, 250) becomes [124, 250).
  const auto at = text.find("125,", text.find("shard-1.bin"));
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 3, "124");
  std::ofstream(dir_ + "/manifest.json") << text;
  auto loaded = LoadCheckpoint(dir_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("overlap"), std::string::npos);
}

TEST_F(CheckpointCorruption, OlderFormatVersion) {
  auto text = ReadFile(dir_ + "/manifest.json").value();
  const auto at = text.find("\"format_version\": 2");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 19, "\"format_version\": 1");
  std::ofstream(dir_ + "/manifest.json") << text;
  auto loaded = LoadCheckpoint(dir_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("format_version 1"), std::string::npos);
}

TEST_F(CheckpointCorruption, MissingManifest) {
  fs::remove(dir_ + "/manifest.json");
  ExpectRejected("missing manifest");
}

TEST_F(CheckpointCorruption, ManifestPointingOutsideItsDirectory) {
  auto text = ReadFile(dir_ + "/manifest.json").value();
  const auto at = text.find("shard-0.bin");
  text.replace(at, 11, "../../etc/passwd");
  std::ofstream(dir_ + "/manifest.json") << text;
  auto loaded = LoadCheckpoint(dir_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("not a plain file name"), std::string::npos);
}

TEST(Checkpoint, UncommittedDirectoriesAreNeverLoadedAndAreCleanedUp) {
  TempDir root;
  std::vector<float> state(30, 1.0f);
  const std::string tmp = root / (StepDirName(5) + ".tmp");
  ASSERT_TRUE(WriteShard(tmp, 0, 1, {{0, 30}}, {{state.data(), 30}}).ok());
  EXPECT_FALSE(LoadCheckpoint(tmp).ok());
  ASSERT_TRUE(RemoveIncomplete(root.path()).ok());
  EXPECT_FALSE(fs::exists(tmp));
}

}  // namespace
}  // namespace vigil::checkpoint
