// Token files and the sample order: round trips, corruption refused with a
// clear error, and an order that is a deterministic permutation per epoch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "common/job_spec.h"
#include "tests/unit/test_util.h"
#include "worker/trainer/data_source.h"
#include "worker/trainer/file_corpus.h"
#include "worker/trainer/sample_order.h"
#include "worker/trainer/synthetic_data.h"
#include "worker/trainer/token_file.h"

namespace vigil::trainer {
namespace {

using vigil::testing::TempDir;

TEST(SampleOrder, IsAPermutationOfEveryEpoch) {
  for (uint64_t n : {1ull, 2ull, 3ull, 10ull, 64ull, 1000ull, 4097ull}) {
    SampleOrder order(n, 42);
    for (uint64_t epoch : {0ull, 1ull, 7ull}) {
      std::set<uint64_t> seen;
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t s = order.Permute(i, epoch);
        ASSERT_LT(s, n);
        seen.insert(s);
      }
      EXPECT_EQ(seen.size(), n) << "n=" << n << " epoch=" << epoch;
    }
  }
}

TEST(SampleOrder, DependsOnlyOnSeedEpochAndIndex) {
  SampleOrder a(1000, 7), b(1000, 7), c(1000, 8);
  int same_as_other_seed = 0, same_as_next_epoch = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(a.At(i), b.At(i));
    EXPECT_EQ(a.At(1000 + i), a.Permute(i, 1));  // global index 1000 + i is epoch 1
    same_as_other_seed += a.At(i) == c.At(i);
    same_as_next_epoch += a.At(i) == a.At(1000 + i);
  }
  // Independent permutations agree in about one place in a thousand.
  EXPECT_LT(same_as_other_seed, 20);
  EXPECT_LT(same_as_next_epoch, 20);
}

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ / "a.txt") << "hello, ";
    std::ofstream(dir_ / "b.txt") << "world\n";
    out_ = dir_ / "corpus.tok";
    auto n = PrepareTokenFile({dir_ / "a.txt", dir_ / "b.txt"}, out_);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(n.value(), 13u);
  }
  void Corrupt(long offset, char value) {
    std::fstream f(out_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(offset);
    f.write(&value, 1);
  }
  TempDir dir_;
  std::string out_;
};

TEST_F(TokenFileTest, RoundTripsTheBytes) {
  auto file = TokenFile::Open(out_);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE(file.value()->Verify().ok());
  ASSERT_EQ(file.value()->num_tokens(), 13u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file.value()->tokens()), 13),
            "hello, world\n");
  EXPECT_FALSE(std::filesystem::exists(out_ + ".tmp"));
}

TEST_F(TokenFileTest, FlippedTokenFailsVerification) {
  Corrupt(kTokenFileHeaderBytes + 3, 'X');
  auto file = TokenFile::Open(out_);
  ASSERT_TRUE(file.ok());  // the header is intact...
  Status st = file.value()->Verify();
  EXPECT_EQ(st.code(), StatusCode::kCorruption);  // ...the checksum is not
  EXPECT_NE(st.message().find("checksum"), std::string::npos);
}

TEST_F(TokenFileTest, BadHeaderOrSizeIsRefusedOnOpen) {
  std::filesystem::resize_file(out_, kTokenFileHeaderBytes + 5);
  auto truncated = TokenFile::Open(out_);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.status().message().find("header says 13 tokens"), std::string::npos)
      << truncated.status().message();
  Corrupt(0, 'X');
  auto magic = TokenFile::Open(out_);
  ASSERT_FALSE(magic.ok());
  EXPECT_NE(magic.status().message().find("bad magic"), std::string::npos);
  EXPECT_EQ(TokenFile::Open(dir_ / "missing.tok").status().code(), StatusCode::kNotFound);
}

TEST_F(TokenFileTest, MissingInputFailsAndLeavesNothing) {
  auto n = PrepareTokenFile({dir_ / "a.txt", dir_ / "nope.txt"}, dir_ / "x.tok");
  ASSERT_FALSE(n.ok());
  EXPECT_NE(n.status().message().find("nope.txt"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.tok"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.tok.tmp"));
}

TEST(FileCorpus, WindowsCoverTheFileOncePerEpoch) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 41; ++i) text.push_back(static_cast<char>('0' + i));  // all distinct
  std::ofstream(dir / "t.txt") << text;
  ASSERT_TRUE(PrepareTokenFile({dir / "t.txt"}, dir / "t.tok").ok());
  auto corpus = FileCorpus::Open(dir / "t.tok", 8, 3);
  ASSERT_TRUE(corpus.ok()) << corpus.status().ToString();
  ASSERT_EQ(corpus.value()->windows(), 5u);  // (41 - 1) / 8
  std::multiset<int32_t> targets;
  std::vector<int32_t> s(9);
  for (uint64_t i = 0; i < 5; ++i) {
    corpus.value()->Sample(i, 8, s.data());
    // Each sample is a contiguous run of the file.
    const auto at = text.find(std::string(s.begin(), s.end()));
    EXPECT_NE(at, std::string::npos);
    EXPECT_EQ(at % 8, 0u);
    for (int t = 1; t <= 8; ++t) targets.insert(s[t]);
  }
  EXPECT_EQ(targets.size(), 40u);  // every token but the first is a target exactly once
  EXPECT_FALSE(FileCorpus::Open(dir / "t.tok", 64, 3).ok());  // too short for one sequence
  // Text has no entropy rate to hold a loss against.
  EXPECT_FALSE(corpus.value()->EntropyRateNats().has_value());
}

// The floor the synthetic source reports is the entropy of what it samples:
// the conditional entropy of each target given the token before it, measured
// over 256k transitions (the estimate's standard error is about 0.001 nats),
// for any seed and vocabulary.
TEST(SyntheticCorpus, EntropyRateIsThatOfItsSamples) {
  for (auto [seed, vocab] : {std::pair<uint64_t, int>{1234, 256}, {7, 4}, {99, 40}}) {
    SyntheticCorpus corpus(seed, vocab);
    const std::optional<double> floor = corpus.EntropyRateNats();
    ASSERT_TRUE(floor.has_value());
    const int S = corpus.symbols(), T = 64;
    std::vector<double> pair(static_cast<size_t>(S) * S), from(S);
    std::vector<int32_t> seq(T + 1);
    double n = 0;
    for (uint64_t i = 0; i < 4096; ++i) {
      corpus.Sample(i, T, seq.data());
      for (int t = 1; t <= T; ++t) {
        ++pair[static_cast<size_t>(seq[t - 1]) * S + seq[t]];
        ++from[seq[t - 1]];
        ++n;
      }
    }
    double h = 0;
    for (int a = 0; a < S; ++a) {
      for (int b = 0; b < S; ++b) {
        const double c = pair[static_cast<size_t>(a) * S + b];
        if (c > 0) h -= c / n * std::log(c / from[a]);
      }
    }
    EXPECT_NEAR(h, *floor, 0.01) << "seed " << seed << " vocab " << vocab;
  }
  EXPECT_NEAR(*SyntheticCorpus(1, 256).EntropyRateNats(), 1.75 * std::log(2.0), 1e-12);
}

TEST(DataSpec, FilePathsResolveAgainstTheJobFile) {
  const std::string yaml =
      "name: f\nmodel: {d_model: 16, heads: 2}\ndata: {kind: file, path: corpus.tok}\n"
      "schedule: {steps: 1}\nworld: {hosts: 1}\n";
  auto spec = ParseJobSpec(yaml, "/jobs/run/job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->data.path, "/jobs/run/corpus.tok");
  auto missing = ParseJobSpec(
      "name: f\nmodel: {}\ndata: {kind: file}\nschedule: {steps: 1}\nworld: {}\n", "j.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("data.path: required when data.kind is 'file'"),
            std::string::npos);
  auto vocab = ParseJobSpec(
      "name: f\nmodel: {vocab: 64}\ndata: {kind: file, path: /c.tok}\nschedule: {steps: 1}\nworld: "
      "{}\n",
      "j.yaml");
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find("model.vocab: must be 256"), std::string::npos);
}

TEST(DataSource, ReportsAMissingCorpusClearly) {
  JobSpec spec;
  spec.data.kind = "file";
  spec.data.path = "/nonexistent/corpus.tok";
  auto source = MakeDataSource(spec);
  ASSERT_FALSE(source.ok());
  EXPECT_NE(source.status().message().find("/nonexistent/corpus.tok"), std::string::npos);
}

}  // namespace
}  // namespace vigil::trainer
