#include "common/job_spec.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace vigil {
namespace {

const char* kValid = R"(name: t
model:
  d_model: 32
  heads: 4
schedule:
  steps: 10
world:
  hosts: 1
  ranks_per_host: 2
)";

std::string ErrorOf(const std::string& yaml) {
  auto spec = ParseJobSpec(yaml, "job.yaml");
  EXPECT_FALSE(spec.ok()) << "expected an error for:\n" << yaml;
  return spec.ok() ? "" : spec.status().message();
}

TEST(JobSpec, ParsesWithDefaults) {
  auto spec = ParseJobSpec(kValid, "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "t");
  EXPECT_EQ(spec->model.d_model, 32);
  EXPECT_EQ(spec->model.layers, 2);  // default
  EXPECT_EQ(spec->world.world_size(), 2);
  EXPECT_EQ(spec->optimizer.kind, "adamw");
}

TEST(JobSpec, SlurmLauncherAndItsSection) {
  auto spec = ParseJobSpec(std::string(kValid) +
                               "launcher: slurm\n"
                               "slurm: {partition: gpu, time_limit: '2-00:00:00', "
                               "drain_timeout_ms: 5000}\n",
                           "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->launcher, "slurm");
  EXPECT_EQ(spec->slurm.partition, "gpu");
  EXPECT_EQ(spec->slurm.time_limit, "2-00:00:00");
  EXPECT_TRUE(spec->slurm.drain);  // default
  EXPECT_EQ(spec->slurm.drain_timeout_ms, 5000);
  EXPECT_NE(ErrorOf(std::string(kValid) + "launcher: pbs\n").find("launcher"), std::string::npos);
  const std::string bad = ErrorOf(std::string(kValid) + "slurm: {drain_timeout_ms: 0}\n");
  EXPECT_NE(bad.find("job.yaml:"), std::string::npos) << bad;
  EXPECT_NE(bad.find("slurm.drain_timeout_ms"), std::string::npos) << bad;
  EXPECT_NE(ErrorOf(std::string(kValid) + "slurm: {nodes: 3}\n").find("slurm.nodes"),
            std::string::npos);
}

TEST(JobSpec, ShippedExamplesParse) {
  int parsed = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(VIGIL_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    auto spec = LoadJobSpec(entry.path().string());
    EXPECT_TRUE(spec.ok()) << spec.status().ToString();
    ++parsed;
  }
  EXPECT_GE(parsed, 5);
  auto glam = LoadJobSpec(std::string(VIGIL_SOURCE_DIR) + "/examples/glam-tiny.yaml");
  ASSERT_TRUE(glam.ok());
  EXPECT_EQ(glam->model.moe.experts, 4);
  EXPECT_EQ(glam->world.world_size(), 4);
}

TEST(JobSpec, MoeSectionIsChecked) {
  const std::string base = std::string(kValid);
  EXPECT_NE(
      ErrorOf(base + "optimizer: {zero: maybe}\n").find("optimizer.zero: expected true or false"),
      std::string::npos);
  std::string yaml = base;
  yaml.replace(yaml.find("  heads: 4"), 10, "  heads: 4\n  moe: {experts: 1}");
  EXPECT_NE(ErrorOf(yaml).find("model.moe.experts: expected an integer in [2, 1024]"),
            std::string::npos)
      << ErrorOf(yaml);
  yaml = base;
  yaml.replace(yaml.find("  heads: 4"), 10,
               "  heads: 4\n  moe: {experts: 3, placement: expert_parallel}");
  EXPECT_NE(ErrorOf(yaml).find("model.moe.placement: expert_parallel needs the world size (2)"),
            std::string::npos)
      << ErrorOf(yaml);
}

TEST(JobSpec, BadValueNamesFileLineColumnAndField) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("d_model: 32"), 11, "d_model: abc");
  EXPECT_EQ(ErrorOf(yaml), "job.yaml:3:12: model.d_model: expected a positive integer, got 'abc'");
}

TEST(JobSpec, UnknownFieldIsAnError) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("  heads: 4"), 10, "  haeds: 4");
  const std::string err = ErrorOf(yaml);
  EXPECT_EQ(err.rfind("job.yaml:4:3: model.haeds: unknown field", 0), 0u) << err;
}

TEST(JobSpec, MissingRequiredPieces) {
  EXPECT_NE(
      ErrorOf("name: t\nmodel: {}\nworld: {}\n").find("schedule: required section is missing"),
      std::string::npos);
  EXPECT_NE(ErrorOf("model: {}\nschedule: {steps: 1}\nworld: {}\n")
                .find("name: required field is missing"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: t\nmodel: {}\nschedule: {warmup_steps: 1}\nworld: {}\n")
                .find("schedule.steps"),
            std::string::npos);
}

TEST(JobSpec, CrossFieldChecks) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("heads: 4"), 8, "heads: 5");
  EXPECT_NE(ErrorOf(yaml).find("job.yaml:4:10: model.heads: must divide model.d_model"),
            std::string::npos);
}

TEST(JobSpec, OutOfRangeAndEnumValues) {
  std::string yaml = kValid;
  yaml.replace(yaml.find("hosts: 1"), 8, "hosts: 0");
  EXPECT_NE(ErrorOf(yaml).find("world.hosts: expected an integer in [1, 16384], got '0'"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kValid) + "optimizer: {kind: lion}\n").find("optimizer.kind"),
            std::string::npos);
}

TEST(JobSpec, SparesAndRegrow) {
  auto plain = ParseJobSpec(kValid, "job.yaml");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->world.spares, 0);
  EXPECT_TRUE(plain->world.regrow) << "a shrunk world grows back by default";
  std::string yaml = kValid;
  yaml.replace(yaml.find("hosts: 1"), 8, "hosts: 1\n  spares: 2\n  regrow: false");
  auto spec = ParseJobSpec(yaml, "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->world.spares, 2);
  EXPECT_FALSE(spec->world.regrow);
  yaml.replace(yaml.find("regrow: false"), 13, "regrow: later");
  EXPECT_NE(ErrorOf(yaml).find("job.yaml:10:11: world.regrow: expected true or false"),
            std::string::npos)
      << ErrorOf(yaml);
}

TEST(JobSpec, PeakFlopsForMfu) {
  EXPECT_EQ(ParseJobSpec(kValid, "job.yaml")->world.peak_tflops_per_rank, 0.0) << "not known";
  std::string yaml = kValid;
  yaml.replace(yaml.find("hosts: 1"), 8, "hosts: 1\n  peak_tflops_per_rank: 989");
  EXPECT_EQ(ParseJobSpec(yaml, "job.yaml")->world.peak_tflops_per_rank, 989.0);
  yaml.replace(yaml.find("989"), 3, "-1");
  EXPECT_NE(ErrorOf(yaml).find("world.peak_tflops_per_rank: expected a non-negative number"),
            std::string::npos)
      << ErrorOf(yaml);
}

TEST(JobSpec, SyntaxErrorNamesThePosition) {
  const std::string err = ErrorOf("name: t\nmodel: [1, 2\n");
  EXPECT_EQ(err.rfind("job.yaml:", 0), 0u) << err;
  EXPECT_NE(err.find("YAML syntax error"), std::string::npos) << err;
}

TEST(JobSpec, ConfigHashTracksWhatDecidesTheParameters) {
  auto a = ParseJobSpec(kValid, "a.yaml").value();
  auto b = ParseJobSpec(std::string(kValid) + "limits: {max_restarts: 3}\n", "b.yaml").value();
  auto c = ParseJobSpec(std::string(kValid) + "data: {seed: 7}\n", "c.yaml").value();
  auto d =
      ParseJobSpec(std::string(kValid) + "optimizer: {kind: sgd, lr: 0.5}\n", "d.yaml").value();
  EXPECT_EQ(a.ConfigHash(), b.ConfigHash());  // limits do not change the math
  EXPECT_NE(a.ConfigHash(), c.ConfigHash());
  // The optimizer and its learning rate may change at a restart.
  EXPECT_EQ(a.ConfigHash(), d.ConfigHash());
}

}  // namespace
}  // namespace vigil

namespace vigil {
namespace {

TEST(JobSpec, DetectionAndPlaybook) {
  auto spec = ParseJobSpec(std::string(kValid) +
                               "detection: {hang_floor_ms: 500, loss_spike_factor: 2.5}\n"
                               "playbook: ../pb/mine.yaml\n",
                           "/jobs/a/job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->detection.hang_floor_ms, 500);
  EXPECT_EQ(spec->detection.hang_factor, 3.0);
  EXPECT_EQ(spec->detection.loss_spike_factor, 2.5);
  EXPECT_EQ(spec->playbook, "/jobs/pb/mine.yaml") << "relative to the job file";
  EXPECT_EQ(ParseJobSpec(kValid, "j.yaml")->playbook, "") << "empty: the built-in default";
  auto bad = ParseJobSpec(std::string(kValid) + "detection: {hang_factor: 0.5}\n", "j.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("detection.hang_factor: expected a number > 1, got '0.5'"),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace vigil
