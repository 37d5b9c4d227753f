// The on-call commands on a real job's logbook: `vigil logbook ls` with
// every filter and format, following a running job (`-f`) while a rank is
// killed, `note`, `show` and `stats`, and the one-line errors (exit 2) for
// a missing, foreign or newer file and a bad time.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/http_client.h"
#include "logbook/logbook.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using nlohmann::json;
using testing::RunCommand;
using testing::TempDir;

// Lines of `out`, each parsed as JSON (a follower prints one object a line).
std::vector<json> JsonLines(const std::string& out) {
  std::vector<json> lines;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (j.is_object()) lines.push_back(j);
  }
  return lines;
}

class LogbookCli : public ::testing::Test {
 protected:
  // One real job: rank 1 killed at step 60, restarted from its checkpoint.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    work_ = new std::string(*dir_ / "job");
    auto run = testing::VigilRun(testing::kTiny, *work_, "--chaos kill-rank:1@60", dir_->path());
    ASSERT_EQ(run.exit_code, 0) << run.err;
  }
  static void TearDownTestSuite() {
    delete work_;
    delete dir_;
  }
  testing::CommandResult Vigil(const std::string& args) {
    return RunCommand(testing::kVigil + " " + args, scratch_.path());
  }
  json Ls(const std::string& filters) {
    auto r = Vigil("logbook ls --workdir " + *work_ + " -o json " + filters);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
  static std::vector<std::string> Whats(const json& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.value("what", ""));
    return out;
  }

  static TempDir* dir_;
  static std::string* work_;
  TempDir scratch_;
};
TempDir* LogbookCli::dir_ = nullptr;
std::string* LogbookCli::work_ = nullptr;

TEST_F(LogbookCli, FiltersSelectWhatOnCallAsksFor) {
  const json all = Ls("");
  ASSERT_TRUE(all.is_array());
  const json exits = Ls("--kind process_exit");
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0]["rank"], 1);
  const std::string host = exits[0]["host"];
  // The event and what answered it, by host and by rank.
  const json on_host = Ls("--host " + host + " --kind process_exit --kind restart_from_latest");
  EXPECT_EQ(Whats(on_host), (std::vector<std::string>{"process_exit", "restart_from_latest"}));
  EXPECT_EQ(Whats(Ls("--rank 1")), Whats(Ls("--kind process_exit --kind restart_from_latest")));
  EXPECT_TRUE(Ls("--rank 3").empty());
  // By actor: the playbook's rules, chaos.
  for (const auto& e : Ls("--actor auto")) {
    EXPECT_EQ(e["actor"].get<std::string>().rfind("auto:", 0), 0u) << e.dump();
  }
  EXPECT_EQ(Whats(Ls("--actor chaos")), (std::vector<std::string>{"inject_fault"}));
  // By time: nothing in the future, everything within the last day.
  EXPECT_TRUE(Ls("--since now").empty());
  EXPECT_EQ(Ls("--since 1d").size(), all.size());
  const std::string t = exits[0]["time"];
  EXPECT_EQ(Whats(Ls("--kind process_exit --until " + t.substr(0, 19))).size(), 0u)
      << "until is exclusive";
  // The newest two, in order.
  const json last = Ls("-n 2");
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[1]["id"], all.back()["id"]);
  EXPECT_EQ(last[1]["type"], all.back()["type"]);
  // CSV: a header, then one quoted line per entry.
  auto csv = Vigil("logbook ls --workdir " + *work_ + " -o csv --kind process_exit");
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  std::istringstream lines(csv.out);
  std::string header, row, extra;
  std::getline(lines, header);
  std::getline(lines, row);
  EXPECT_FALSE(std::getline(lines, extra)) << csv.out;
  EXPECT_EQ(header, "time,run,type,id,what,generation,host,rank,step,event_id,actor,detail");
  EXPECT_NE(row.find(",event,"), std::string::npos) << row;
  EXPECT_NE(row.find(",process_exit,0," + host + ",1,"), std::string::npos) << row;
  // The detail is one quoted field, its quotes doubled.
  EXPECT_NE(row.find(",\"{\"\"codes\"\":[137],"), std::string::npos) << row;
  EXPECT_NE(row.find("\"\"detection_latency_ms\"\""), std::string::npos) << row;
}

TEST_F(LogbookCli, NotesShowAndStats) {
  auto note = Vigil("logbook note --workdir " + *work_ +
                    " --author alice 'rank 1 was killed on purpose, by chaos'");
  ASSERT_EQ(note.exit_code, 0) << note.err;
  EXPECT_NE(note.out.find("by alice"), std::string::npos) << note.out;
  const json notes = Ls("--kind note --actor human:alice");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0]["detail"]["text"], "rank 1 was killed on purpose, by chaos");
  EXPECT_TRUE(Ls("--kind note --actor human:bob").empty());

  const json exits = Ls("--kind process_exit");
  ASSERT_EQ(exits.size(), 1u);
  auto show = Vigil("logbook show " + std::to_string(exits[0]["id"].get<int64_t>()) +
                    " --workdir " + *work_ + " -o json");
  ASSERT_EQ(show.exit_code, 0) << show.err;
  const json s = json::parse(show.out);
  EXPECT_EQ(s["event"]["kind"], "process_exit");
  ASSERT_EQ(s["interventions"].size(), 1u);
  EXPECT_EQ(s["interventions"][0]["action"], "restart_from_latest");
  EXPECT_EQ(s["generation"]["number"], 0);
  EXPECT_EQ(s["next_generation"]["number"], 1);
  EXPECT_EQ(s["next_generation"]["resumed_from_step"], s["checkpoint_before"]["step"]);
  EXPECT_GT(s["recovery_ms"].get<double>(), 0.0);
  // The training around it: generation 0 up to the kill at step 60, then
  // generation 1 from its checkpoint on.
  const json& around = s["steps_around"];
  ASSERT_EQ(around.size(), 10u) << around.dump();
  EXPECT_EQ(around[4]["generation"], 0);
  EXPECT_FALSE(around[4]["after_event"].get<bool>());
  EXPECT_LE(around[4]["step"].get<int64_t>(), 60);
  EXPECT_EQ(around[5]["generation"], 1);
  EXPECT_EQ(around[5]["step"].get<int64_t>(), s["checkpoint_before"]["step"].get<int64_t>() + 1);
  EXPECT_TRUE(around[5]["loss"].is_number());
  auto text = Vigil("logbook show " + std::to_string(exits[0]["id"].get<int64_t>()) +
                    " --workdir " + *work_);
  EXPECT_NE(text.out.find("answered by:"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("---- event#"), std::string::npos) << text.out;
  EXPECT_EQ(Vigil("logbook show 999 --workdir " + *work_).exit_code, 2);

  auto stats = Vigil("logbook stats --workdir " + *work_ + " -o json");
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const json st = json::parse(stats.out);
  EXPECT_EQ(st["restarts"], 1);
  EXPECT_EQ(st["generations"], 2);
  EXPECT_EQ(st["failures_by_kind"]["process_exit"], 1);
  EXPECT_GT(st["goodput"].get<double>(), 0.3);
  EXPECT_LT(st["goodput"].get<double>(), 1.0) << "a restart and a replay cost something";
  EXPECT_GT(st["mtbf_seconds"].get<double>(), 0.0);
}

// The chronicle: a day's heading, the generations, the failure with what
// answered it and who, the checkpoints, a person's note.
TEST_F(LogbookCli, ExportWritesTheRunsChronicle) {
  ASSERT_EQ(Vigil("logbook note --workdir " + *work_ + " --author bob 'chronicle check'").exit_code,
            0);
  const std::string file = scratch_ / "chronicle.md";
  auto r = Vigil("logbook export --workdir " + *work_ + " --format markdown -o " + file);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string md = testing::Slurp(file);
  EXPECT_EQ(md.rfind("# tiny, run 1\n", 0), 0u) << md;
  EXPECT_NE(md.find("succeeded"), std::string::npos) << md;
  EXPECT_NE(md.find("\n## 20"), std::string::npos) << "a day's heading\n" << md;
  EXPECT_NE(md.find("Generation 0 started: 4 ranks"), std::string::npos) << md;
  EXPECT_NE(md.find("Generation 1 started: 4 ranks"), std::string::npos) << md;
  EXPECT_NE(md.find("resumed from step 50"), std::string::npos) << md;
  EXPECT_NE(md.find("**process_exit** rank 1"), std::string::npos) << md;
  EXPECT_NE(md.find("killed by SIGKILL → `restart_from_latest` from step 50 (auto:restart)"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("`inject_fault` (chaos)"), std::string::npos) << md;
  EXPECT_NE(md.find("Checkpoints: "), std::string::npos) << md;
  EXPECT_NE(md.find("Note by bob: “chronicle check”"), std::string::npos) << md;
  EXPECT_EQ(Vigil("logbook export --workdir " + *work_ + " --format html").exit_code, 2);
}

TEST_F(LogbookCli, BadInputIsOneLineAndExitTwo) {
  auto one_line = [](const testing::CommandResult& r) {
    return r.err.find('\n') == r.err.size() - 1;
  };
  auto missing = Vigil("logbook ls --workdir " + scratch_ / "nowhere");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(one_line(missing)) << missing.err;
  EXPECT_NE(missing.err.find("no logbook here"), std::string::npos) << missing.err;
  auto bad_time = Vigil("logbook ls --workdir " + *work_ + " --since yesterday");
  EXPECT_EQ(bad_time.exit_code, 2);
  EXPECT_TRUE(one_line(bad_time)) << bad_time.err;
  EXPECT_NE(bad_time.err.find("bad time 'yesterday'"), std::string::npos) << bad_time.err;
  EXPECT_EQ(Vigil("logbook ls --workdir " + *work_ + " --until 2026-02-30").exit_code, 2);

  const std::string foreign = scratch_ / "foreign.sqlite";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "CREATE TABLE customers (id INTEGER)", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto f = Vigil("logbook ls --workdir " + foreign);
  EXPECT_EQ(f.exit_code, 2);
  EXPECT_NE(f.err.find("not a vigil logbook"), std::string::npos) << f.err;

  const std::string newer = scratch_ / "newer.sqlite";
  { ASSERT_TRUE(Logbook::Open(newer, true).ok()); }
  ASSERT_EQ(sqlite3_open(newer.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto n = Vigil("logbook stats --workdir " + newer);
  EXPECT_EQ(n.exit_code, 2);
  EXPECT_TRUE(one_line(n)) << n.err;
  EXPECT_NE(n.err.find("newer than this vigil"), std::string::npos) << n.err;
}

// `-f` on a running job prints what is there, then each new entry once, as
// it is written: here the kill, its detection and the restart. vigild's
// HTTP API answers the same queries while it runs.
TEST_F(LogbookCli, FollowAndTheHttpApiOfARunningJob) {
  const std::string work = scratch_ / "live";
  const pid_t run = testing::StartVigil({"run", testing::kTiny, "--workdir", work, "-o", "json"},
                                        scratch_ / "run.log");
  ASSERT_GT(run, 0);
  ASSERT_FALSE(testing::WaitForJobState(work, "running", std::chrono::seconds(60)).is_null());
  const pid_t follower = testing::StartVigil(
      {"logbook", "ls", "--workdir", work, "-f", "-o", "json"}, scratch_ / "follow.out");
  ASSERT_GT(follower, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto chaos = Vigil("chaos kill-rank:2 --workdir " + work + " --by tester");
  EXPECT_EQ(chaos.exit_code, 0) << chaos.err;
  std::vector<json> seen;
  for (int i = 0; i < 200; ++i) {
    seen = JsonLines(testing::Slurp(scratch_ / "follow.out"));
    bool restarted = false;
    for (const auto& e : seen) restarted |= e.value("what", "") == "restart_from_latest";
    if (restarted) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> whats;
  std::set<std::string> keys;
  for (const auto& e : seen) {
    whats.push_back(e.value("what", ""));
    keys.insert(e["type"].get<std::string>() + "#" + std::to_string(e["id"].get<int64_t>()));
  }
  EXPECT_EQ(keys.size(), seen.size()) << "an entry printed twice";
  auto at = [&](const std::string& what) {
    return std::find(whats.begin(), whats.end(), what) - whats.begin();
  };
  ASSERT_LT(at("inject_fault"), static_cast<long>(whats.size()))
      << testing::Slurp(scratch_ / "follow.out");
  ASSERT_LT(at("process_exit"), static_cast<long>(whats.size()));
  ASSERT_LT(at("restart_from_latest"), static_cast<long>(whats.size()));
  EXPECT_LT(at("inject_fault"), at("process_exit"));
  EXPECT_LT(at("process_exit"), at("restart_from_latest"));
  ::kill(follower, SIGTERM);
  ::waitpid(follower, nullptr, 0);

  const auto addr = testing::ReadVigildAddress(work);
  ASSERT_TRUE(addr);
  auto get = [&](const std::string& path) {
    auto r = ApiGet(work, addr->http, path, std::chrono::milliseconds(2000));
    EXPECT_TRUE(r.ok()) << path;
    return r.ok() ? std::make_pair(r->status, json::parse(r->body, nullptr, false))
                  : std::make_pair(0, json());
  };
  const auto [code, api] = get("/api/v1/events?kind=process_exit&kind=restart_from_latest");
  EXPECT_EQ(code, 200);
  const auto file = RunCommand(testing::kVigil + " logbook ls --workdir " + work +
                                   " -o json --kind process_exit --kind restart_from_latest",
                               scratch_.path());
  EXPECT_EQ(api, json::parse(file.out, nullptr, false)) << "the API and the file agree";
  ASSERT_EQ(api.size(), 2u);
  EXPECT_EQ(api[0]["rank"], 2);
  const auto [hosts_code, hosts] = get("/api/v1/hosts");
  EXPECT_EQ(hosts_code, 200);
  ASSERT_EQ(hosts.size(), 2u);
  std::set<int> ranks;
  for (const auto& h : hosts) {
    EXPECT_EQ(h["state"], "active") << h.dump();
    for (const auto& r : h["ranks"]) ranks.insert(r.get<int>());
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3}));
  const auto [runs_code, runs] = get("/api/v1/runs");
  EXPECT_EQ(runs_code, 200);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["status"], "running");
  const auto [bad_code, bad] = get("/api/v1/events?since=yesterday");
  EXPECT_EQ(bad_code, 400);
  EXPECT_NE(bad.value("error", "").find("bad time 'yesterday'"), std::string::npos) << bad;
  int status = 0;
  ASSERT_EQ(::waitpid(run, &status, 0), run);
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// `vigil report`: one page, nothing fetched, every generation's curve, every
// detection and intervention marked; headless Chromium draws it.
TEST_F(LogbookCli, ReportDrawsTheRunInOneSelfContainedPage) {
  const std::string page = scratch_ / "report.html";
  auto r = Vigil("report --workdir " + *work_ + " -o " + page);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string html = testing::Slurp(page);
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = html.find(needle); at != std::string::npos; at = html.find(needle, at + 1))
      ++n;
    return n;
  };
  EXPECT_EQ(count("<script"), 0u);
  EXPECT_EQ(count("http://") + count("https://") + count("src="), 0u) << "nothing to fetch";
  const json entries = Ls("");
  size_t events = 0, interventions = 0;
  for (const auto& e : entries) {
    if (e["type"] == "event") ++events;
    if (e["type"] == "intervention" && e["what"] != "delete_checkpoint") ++interventions;
  }
  EXPECT_EQ(count("<polyline"), 2u) << "one loss line per generation";
  EXPECT_EQ(count("class='event'"), events);
  EXPECT_EQ(count("class='intervention'"), interventions);
  EXPECT_NE(html.find("restart_from_latest"), std::string::npos);
  EXPECT_NE(html.find(">process_exit<"), std::string::npos) << "failures by class";
  EXPECT_EQ(Vigil("report --workdir " + *work_ + " --run 99").exit_code, 2);

  // Drawn by a real browser: a PNG of the window's size, far from blank.
  const std::string png = scratch_ / "report.png";
  auto shot = RunCommand(
      "chromium --headless --no-sandbox --disable-gpu --window-size=1100,1400 "
      "--screenshot=" +
          png + " file://" + page,
      scratch_.path());
  ASSERT_EQ(shot.exit_code, 0) << shot.err;
  const std::string image = testing::Slurp(png);
  ASSERT_GT(image.size(), 24u) << shot.err;
  EXPECT_EQ(image.substr(1, 3), "PNG");
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<unsigned char>(image[at])) << 24) |
           (static_cast<uint32_t>(static_cast<unsigned char>(image[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<unsigned char>(image[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<unsigned char>(image[at + 3]));
  };
  EXPECT_EQ(be32(16), 1100u);
  EXPECT_EQ(be32(20), 1400u);
  EXPECT_GT(image.size(), 40000u) << "a blank page compresses to a few kB";
}

}  // namespace
}  // namespace vigil
