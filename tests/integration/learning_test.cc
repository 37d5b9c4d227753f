// The example jobs learn, end to end (vigil run, vigild, agents, Gloo
// ranks): on the synthetic corpus the OPT-style and GLaM-style tiny jobs
// reach within 0.1 nats of the entropy floor of the job's own source
// (SyntheticCorpus::EntropyRateNats, 1.213 nats/token for these) in 300
// steps; uniform guessing costs ln(256) = 5.55. The GLaM job's
// experts are sharded over its four ranks, and a rank SIGKILLed mid-run
// still leaves exactly the parameters of an uninterrupted run: the
// all-to-all, the per-rank expert shards and their checkpoint all resume
// bit for bit.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "common/job_spec.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"
#include "worker/trainer/data_source.h"

namespace vigil {
namespace {

using nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

constexpr double kMargin = 0.1;

// The entropy floor of the example's data source, as the source computes it.
double EntropyFloorOf(const std::string& example) {
  auto spec = LoadJobSpec(std::string(VIGIL_SOURCE_DIR) + "/examples/" + example);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  if (!spec.ok()) return 0;
  auto data = trainer::MakeDataSource(spec.value());
  EXPECT_TRUE(data.ok()) << data.status().ToString();
  if (!data.ok()) return 0;
  const std::optional<double> floor = data.value()->EntropyRateNats();
  EXPECT_TRUE(floor.has_value()) << example << ": its source has no known entropy floor";
  return floor.value_or(0);
}

// The final loss is a batch's mean on data the model has not seen: within
// the margin of the floor on either side (a loss well below the floor would
// mean the targets leaked into the inputs).
void ExpectNearTheFloor(const json& summary, double floor) {
  const double loss = summary["final_loss"].get<double>();
  EXPECT_LT(loss, floor + kMargin) << summary.dump();
  EXPECT_GT(loss, floor - kMargin) << summary.dump();
}

json RunExample(const TempDir& dir, const std::string& example, const std::string& workdir,
                const std::string& extra = "") {
  const std::string cmd = std::string(VIGIL_BIN_DIR) + "/vigil run " + VIGIL_SOURCE_DIR +
                          "/examples/" + example + " --workdir " + workdir + " -o json " + extra;
  auto r = RunCommand(cmd, dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  json j = json::parse(r.LastLine(), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.LastLine() << "\n" << r.err;
  return j;
}

TEST(Learning, OptTinyReachesTheEntropyFloor) {
  TempDir dir;
  const json j = RunExample(dir, "opt-tiny.yaml", dir / "run");
  ASSERT_EQ(j.value("status", ""), "succeeded") << j.dump();
  const double floor = EntropyFloorOf("opt-tiny.yaml");
  ASSERT_TRUE(j["entropy_floor"].is_number()) << j.dump();
  EXPECT_DOUBLE_EQ(j["entropy_floor"].get<double>(), floor);
  ExpectNearTheFloor(j, floor);
}

TEST(Learning, GlamTinyReachesTheEntropyFloorAndResumesBitExactly) {
  TempDir dir;
  const json clean = RunExample(dir, "glam-tiny.yaml", dir / "clean");
  const json chaos = RunExample(dir, "glam-tiny.yaml", dir / "chaos", "--chaos kill-rank:3@130");
  ASSERT_EQ(clean.value("status", ""), "succeeded") << clean.dump();
  ASSERT_EQ(chaos.value("status", ""), "succeeded") << chaos.dump();
  const double floor = EntropyFloorOf("glam-tiny.yaml");
  EXPECT_DOUBLE_EQ(clean["entropy_floor"].get<double>(), floor);
  ExpectNearTheFloor(clean, floor);
  EXPECT_EQ(chaos["restarts"], 1);
  EXPECT_EQ(chaos["params_digest"], clean["params_digest"]);
  EXPECT_EQ(chaos["final_loss"], clean["final_loss"]);
}

}  // namespace
}  // namespace vigil
