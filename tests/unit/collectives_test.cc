// vigil's ring collectives over real Gloo TCP pairs: exact sums, ownership
// of chunks, uneven and empty chunks, the same bits on every run.
#include "worker/trainer/collectives.h"

#include <gtest/gtest.h>

#include <mutex>

#include "common/partition.h"
#include "tests/unit/gloo_world.h"
#include "worker/trainer/rng.h"

namespace vigil::trainer {
namespace {

using vigil::testing::RunWorld;

// Values that sum exactly in float: rank * 1000 + index.
std::vector<float> Exact(int rank, int64_t n) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(rank * 1000 + i);
  return v;
}

float ExactSum(int world, int64_t i) {
  float s = 0;
  for (int r = 0; r < world; ++r) s += static_cast<float>(r * 1000 + i);
  return s;
}

class CollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(CollectivesTest, ReduceScatterLeavesEachRankItsSummedChunk) {
  const int W = GetParam();
  // Uneven chunks, one of them empty when the world allows.
  std::vector<int64_t> off(W + 1, 0);
  for (int r = 0; r < W; ++r) off[r + 1] = off[r] + (r == 1 ? 0 : 3 + 2 * r);
  RunWorld(W, [&](Collectives& c) {
    auto v = Exact(c.rank(), off[W]);
    c.ReduceScatterSum(v.data(), off);
    for (int64_t i = off[c.rank()]; i < off[c.rank() + 1]; ++i)
      EXPECT_EQ(v[i], ExactSum(W, i)) << "rank " << c.rank() << " index " << i;
  });
}

TEST_P(CollectivesTest, AllgatherCopiesEveryRanksChunkEverywhere) {
  const int W = GetParam();
  const auto off = BalancedOffsets(10, W);
  RunWorld(W, [&](Collectives& c) {
    std::vector<float> v(10, -1.0f);
    for (int64_t i = off[c.rank()]; i < off[c.rank() + 1]; ++i) v[i] = 100.0f * c.rank() + i;
    c.Allgather(v.data(), off);
    for (int r = 0; r < W; ++r)
      for (int64_t i = off[r]; i < off[r + 1]; ++i) EXPECT_EQ(v[i], 100.0f * r + i);
  });
}

TEST_P(CollectivesTest, AllreduceSumsExactlyEvenWhenChunksAreEmpty) {
  const int W = GetParam();
  for (int64_t n : {1, 2, 1000}) {
    RunWorld(W, [&](Collectives& c) {
      auto v = Exact(c.rank(), n);
      c.AllreduceSum(v.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(v[i], ExactSum(W, i)) << "n " << n;
    });
  }
}

// Arbitrary floats: the ring's fixed order gives the same bits every run and
// on every rank.
TEST_P(CollectivesTest, AllreduceIsBitIdenticalRunAfterRunAndAcrossRanks) {
  const int W = GetParam();
  std::vector<std::vector<float>> results;
  std::mutex mu;
  for (int run = 0; run < 2; ++run) {
    RunWorld(W, [&](Collectives& c) {
      Rng rng(77 + c.rank());
      std::vector<float> v(513);
      for (auto& x : v) x = static_cast<float>(rng.Normal());
      c.AllreduceSum(v.data(), static_cast<int64_t>(v.size()));
      std::lock_guard<std::mutex> lock(mu);
      results.push_back(v);
    });
  }
  for (const auto& r : results) EXPECT_EQ(r, results[0]);
}

TEST_P(CollectivesTest, AllToAllDeliversBlockQToRankQ) {
  const int W = GetParam();
  const int64_t block = 3;
  RunWorld(W, [&](Collectives& c) {
    std::vector<float> send(block * W), recv(block * W, -1.0f);
    for (int q = 0; q < W; ++q)
      for (int64_t i = 0; i < block; ++i) send[q * block + i] = 100.0f * c.rank() + 10.0f * q + i;
    c.AllToAll(send.data(), recv.data(), block);
    for (int p = 0; p < W; ++p)
      for (int64_t i = 0; i < block; ++i)
        EXPECT_EQ(recv[p * block + i], 100.0f * p + 10.0f * c.rank() + i);
  });
}

TEST_P(CollectivesTest, AllgatherBytesOrdersByRank) {
  const int W = GetParam();
  RunWorld(W, [&](Collectives& c) {
    const uint64_t mine[2] = {static_cast<uint64_t>(c.rank()), 7};
    std::vector<uint64_t> all(2 * W);
    c.AllgatherBytes(mine, sizeof(mine), all.data());
    for (int r = 0; r < W; ++r) {
      EXPECT_EQ(all[2 * r], static_cast<uint64_t>(r));
      EXPECT_EQ(all[2 * r + 1], 7u);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Worlds, CollectivesTest, ::testing::Values(1, 2, 3, 4));

}  // namespace
}  // namespace vigil::trainer
