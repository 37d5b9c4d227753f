// What the tests of vigild's death and takeover share (issue 18): the
// demo job with agents quicker to give up on a silent vigild, what the
// agents' logs and the logbook say afterwards, and the undisturbed run
// every test compares with, run once for the whole binary.
#pragma once

#include <sqlite3.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "common/fs.h"
#include "common/util.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil::testing {

// The demo job, with agents that give up on a silent vigild sooner (and
// `extra_limits`, lines of its limits section).
inline std::string WriteJob(const TempDir& dir, const std::string& extra_limits = "") {
  std::string job = Slurp(kTiny);
  const std::string from = "heartbeat_timeout_ms: 5000";
  const auto at = job.find(from);
  EXPECT_NE(at, std::string::npos);
  job.replace(at, from.size(), "heartbeat_timeout_ms: 1500" + extra_limits);
  const std::string path = dir / "job.yaml";
  EXPECT_TRUE(WriteFileAtomic(path, job).ok());
  return path;
}

inline JobRun RunJob(const TempDir& dir, const std::string& job, const std::string& workdir,
                     const std::string& extra) {
  auto run = VigilRun(job, workdir, extra, dir.path());
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.summary.value("status", ""), "succeeded") << run.summary.dump() << "\n" << run.err;
  return run;
}

// The agents' logs of a work directory.
inline std::vector<std::string> AgentLogs(const std::string& workdir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(workdir + "/logs")) {
    if (e.path().filename().string().rfind("agent-", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

// Every rank process the agents started: (rank, generation) -> pid, from their logs.
inline std::map<std::pair<int, int>, int> StartedRanks(const std::string& workdir) {
  std::map<std::pair<int, int>, int> out;
  const std::regex line(R"(started rank (\d+) of generation (\d+) as pid (\d+))");
  for (const auto& log : AgentLogs(workdir)) {
    const std::string text = Slurp(log);
    for (auto it = std::sregex_iterator(text.begin(), text.end(), line);
         it != std::sregex_iterator(); ++it) {
      out[{std::stoi((*it)[1]), std::stoi((*it)[2])}] = std::stoi((*it)[3]);
    }
  }
  return out;
}

inline std::string IntegrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  std::string out;
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr);
  while (sqlite3_step(s) == SQLITE_ROW)
    out += reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

inline std::vector<EventRow> EventsOfKind(Logbook& lb, int64_t run, const std::string& kind) {
  std::vector<EventRow> out;
  auto events = lb.Events(run);
  EXPECT_TRUE(events.ok());
  if (!events.ok()) return out;
  for (const auto& e : events.value()) {
    if (e.kind == kind) out.push_back(e);
  }
  return out;
}

// Polls vigild's status until rank 0 passes `step` (the job is running).
inline int64_t WaitForStep(const std::string& workdir, int64_t step) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    nlohmann::json s = WaitForJobState(workdir, "running", std::chrono::milliseconds(2000));
    if (s.is_object() && s.value("step", int64_t{0}) >= step) return s["step"];
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

// `vigil run -o json`'s summary: the last line it printed.
inline nlohmann::json SummaryOf(const std::string& out) {
  CommandResult r;
  r.out = out;
  return nlohmann::json::parse(r.LastLine(), nullptr, false);
}

inline int VigildPid(const std::string& workdir) {
  auto a = ReadVigildAddr(workdir);
  return a.ok() ? a->pid : 0;
}

// The undisturbed run's summary: run once for the whole binary (every test
// in it compares with it), on first use.
inline const nlohmann::json& CleanRun() {
  static const TempDir dir;
  static const nlohmann::json summary = RunJob(dir, WriteJob(dir), dir / "clean", "").summary;
  return summary;
}

// A test of vigild's death: a job file of its own in a directory of its own.
class CoordinatorRestart : public ::testing::Test {
 protected:
  void SetUp() override {
    clean_ = &CleanRun();
    job_ = WriteJob(dir_);
  }
  const nlohmann::json* clean_ = nullptr;
  TempDir dir_;
  std::string job_;
};

}  // namespace vigil::testing
