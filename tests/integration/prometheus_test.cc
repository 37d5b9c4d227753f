// Debian's Prometheus against a real job: it scrapes vigild's /metrics every
// second and evaluates dashboards/prometheus/vigil-rules.yml while the job
// trains through a killed rank, an Xid that cordons a host for a spare, a
// loss spike and a full disk. Then, through Prometheus's HTTP API, every
// dashboard panel's and annotation's PromQL returns data over the run, every
// recording rule does, every series an alert reads exists, and the loss
// spike's alert fires. A real scrape passes `promtool check metrics`. The
// agents read GPU health through a stand-in for the driver's NVML library.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "common/http_client.h"
#include "common/util.h"
#include "tests/integration/process_util.h"
#include "tests/unit/dashboard_queries.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::Slurp;
using testing::TempDir;

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::set<std::string> MetricNames(const std::string& expr) {
  static const std::regex name("\\b(vigil[_:][a-z0-9_:]+|up)\\b");
  std::set<std::string> out;
  for (std::sregex_iterator it(expr.begin(), expr.end(), name), end; it != end; ++it)
    out.insert((*it)[1]);
  return out;
}

// Grafana's variables as a dashboard over this run would set them.
std::string Instantiate(std::string expr) {
  for (const auto& [var, value] :
       std::vector<std::pair<std::string, std::string>>{{"$__rate_interval", "5s"},
                                                        {"$__interval", "5s"},
                                                        {"$__range", "10m"},
                                                        {"$instance", ".*"}}) {
    for (size_t at; (at = expr.find(var)) != std::string::npos;)
      expr.replace(at, var.size(), value);
  }
  return expr;
}

class PrometheusTest : public ::testing::Test {
 protected:
  void TearDown() override {
    for (pid_t pid : {prometheus_, vigil_}) {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
    for (int pid : testing::ProcessesMentioning(work_)) ::kill(pid, SIGKILL);
  }

  // The query's result over the whole run so far (a range query, as a dashboard makes).
  json QueryRange(const std::string& expr) {
    const double now = static_cast<double>(NowMicros()) / 1e6;
    const std::string path = "/api/v1/query_range?query=" + UrlEncode(expr) +
                             "&start=" + std::to_string(started_) + "&end=" + std::to_string(now) +
                             "&step=1";
    auto r = HttpGet(prometheus_addr_, path, milliseconds(10000));
    if (!r.ok()) return json{{"status", "error"}, {"error", r.status().ToString()}};
    auto j = json::parse(r->body, nullptr, false);
    return j.is_object() ? j : json{{"status", "error"}, {"error", r->body}};
  }

  TempDir dir_;
  std::string work_ = dir_ / "work";
  std::string prometheus_addr_;
  double started_ = 0;
  pid_t vigil_ = -1, prometheus_ = -1;
};

TEST_F(PrometheusTest, EveryPanelAnnotationAndRuleReturnsDataFromARealRun) {
  // The demo job, longer, with a spare host and a peak for MFU.
  std::string job = Slurp(testing::kTiny);
  job = std::regex_replace(job, std::regex("steps: 300"), "steps: 1200");
  job = std::regex_replace(job, std::regex("device: cpu"),
                           "device: cpu\n  spares: 1\n  peak_tflops_per_rank: 0.02");
  // /metrics needs the token too: Prometheus scrapes with it.
  job += "\nsecurity:\n  metrics_token: true\n";
  std::ofstream(dir_ / "job.yaml") << job;
  // The agents read GPU health through NVML: here the stand-in driver
  // library (tests/fake_nvml), two GPUs a host.
  std::ofstream(dir_ / "nvml-state") << "58 87 0 0 0\n62 87 0 0 0\n";
  SpawnOptions run;
  run.argv = {
      testing::kVigil,   "run",     dir_ / "job.yaml", "--workdir", work_,         "--chaos",
      "kill-rank:1@150", "--chaos", "xid:79:2@300",    "--chaos",   "spike:0@450", "--chaos",
      "disk-full:0@560"};
  run.env_add = {std::string("VIGIL_NVML_LIBRARY=") + VIGIL_FAKE_NVML,
                 "VIGIL_FAKE_NVML_STATE=" + (dir_ / "nvml-state")};
  run.log_file = dir_ / "vigil.out";
  run.parent_death_signal = SIGKILL;
  auto started = SpawnProcess(run);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  vigil_ = started.value();
  const auto addr = testing::WaitForVigildAddress(work_, milliseconds(30000));
  ASSERT_TRUE(addr) << Slurp(dir_ / "vigil.out");

  const std::string rules = testing::RulesPath();
  std::ofstream(dir_ / "prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "rule_files: [\"" << rules << "\"]\n"
      << "scrape_configs:\n  - job_name: vigil\n    static_configs:\n"
      << "      - targets: [\"" << addr->http << "\"]\n"
      << "    authorization:\n      credentials_file: " << work_ << "/token\n";
  prometheus_addr_ = "127.0.0.1:" + std::to_string(FreePort());
  started_ = static_cast<double>(NowMicros()) / 1e6 - 1;
  SpawnOptions o;
  o.argv = {"/usr/bin/prometheus", "--config.file=" + (dir_ / "prometheus.yml"),
            "--storage.tsdb.path=" + (dir_ / "tsdb"), "--web.listen-address=" + prometheus_addr_,
            "--log.level=warn"};
  o.log_file = dir_ / "prometheus.log";
  o.parent_death_signal = SIGKILL;
  auto pid = SpawnProcess(o);
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  prometheus_ = pid.value();
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    auto r = HttpGet(prometheus_addr_, "/-/ready", milliseconds(1000));
    ready = r.ok() && r->status == 200;
    if (!ready) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(ready) << Slurp(dir_ / "prometheus.log");

  // A real scrape, linted by Prometheus's own tool.
  auto refused = HttpGet(addr->http, "/metrics", milliseconds(5000));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 401) << "metrics_token: /metrics must need the token";
  auto scrape = ApiGet(work_, addr->http, "/metrics", milliseconds(5000));
  ASSERT_TRUE(scrape.ok() && scrape->status == 200);
  std::ofstream(dir_ / "scrape.txt") << scrape->body;
  const auto lint =
      testing::RunCommand("promtool check metrics < " + (dir_ / "scrape.txt"), dir_.path());
  EXPECT_EQ(lint.exit_code, 0) << lint.out << lint.err;
  EXPECT_EQ(lint.out + lint.err, "");

  // Train through the faults: the newest (the full disk at step 560) is
  // recorded when its save fails at 575; a few more scrapes after that.
  json status;
  for (int i = 0; i < 1800; ++i) {
    auto r = ApiGet(work_, addr->http, "/api/v1/status", milliseconds(1000));
    if (r.ok() && r->status == 200) status = json::parse(r->body, nullptr, false);
    if (status.is_object() && status.value("step", 0) >= 700) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_GE(status.value("step", 0), 700) << status.dump() << Slurp(dir_ / "vigil.out");
  std::this_thread::sleep_for(milliseconds(3000));

  // Every target of every panel, and every annotation.
  int queried = 0;
  for (const auto& [what, expr] : testing::DashboardQueries()) {
    const json r = QueryRange(Instantiate(expr));
    ASSERT_EQ(r.value("status", ""), "success") << what << ": " << r.dump();
    EXPECT_FALSE(r["data"]["result"].empty()) << what << " has no data: " << expr;
    ++queried;
  }
  EXPECT_GE(queried, 60) << "every target of every panel, and every annotation";

  // The rules: recordings return data; every series an alert reads exists.
  for (const auto& rule : testing::RuleQueries()) {
    const json r = QueryRange(rule.expr);
    ASSERT_EQ(r.value("status", ""), "success") << rule.expr << ": " << r.dump();
    if (rule.recording) {
      EXPECT_FALSE(QueryRange(rule.name)["data"]["result"].empty())
          << rule.name << " recorded nothing";
      continue;
    }
    for (const auto& n : MetricNames(rule.expr)) {
      EXPECT_FALSE(QueryRange(n)["data"]["result"].empty())
          << rule.name << " reads " << n << ", which has no data";
    }
  }

  // The loss spike at step 450 is an anomaly Prometheus alerts on.
  auto alerts = HttpGet(prometheus_addr_, "/api/v1/alerts", milliseconds(5000));
  ASSERT_TRUE(alerts.ok());
  std::set<std::string> firing;
  const json alert_list = json::parse(alerts->body);
  for (const auto& a : alert_list["data"]["alerts"]) {
    if (a.value("state", "") == "firing") firing.insert(a["labels"].value("alertname", ""));
  }
  EXPECT_TRUE(firing.count("VigilLossSpike")) << alerts->body;
  EXPECT_FALSE(firing.count("VigilNoProgress")) << alerts->body;
  EXPECT_FALSE(firing.count("VigilDown")) << alerts->body;

  // The job still ends well.
  int st = 0;
  ASSERT_EQ(::waitpid(vigil_, &st, 0), vigil_);
  vigil_ = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << Slurp(dir_ / "vigil.out");
}

}  // namespace
}  // namespace vigil
