// The logbook at the size of a long run, and beyond: N events (default ten
// million) over 60 days on 1000 hosts of 8 ranks, one intervention per
// four events, a few hundred notes.
//
//   build/bin/logbook_bench [--events N] [--dir DIR] [--reps R] [--keep]
//
// Prints, each beside its baseline measured in the same run:
//  - the batched insert rate through Logbook::AddEvents (50k events a
//    transaction, synchronous = FULL), beside Python's sqlite3 module
//    inserting 1M of the same rows into the same table with executemany
//    in one transaction, with the same indices and with none (the "plain
//    SQLite from Python" figure), and AddEvents into a table without them;
//  - p50 and p99 latency of the CLI's typical queries (`vigil logbook ls`
//    with its filters, `show`, a follower's poll), run R times each through
//    the same code the CLI uses: on a warm connection (vigild's HTTP API, a
//    follower) and as one CLI call has it (a fresh process, this program
//    again: open the file, query, close; a loop in one process would reuse
//    its heap and SQLite's warmed-up code, which no CLI call has),
//    beside the same queries after every secondary index is dropped (fewer
//    repetitions: they scan).
//
// --keep leaves DIR/logbook.sqlite as built, indices and all, for a look
// with sqlite3, and skips the no-index queries.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <sqlite3.h>

#include "bench/bench_util.h"
#include "logbook/logbook.h"
#include "logbook/logbook_writer.h"

namespace {

using vigil::EntryFilter;
using vigil::EventRow;
using vigil::InterventionRow;
using vigil::Logbook;
using vigil::bench::Arg;
using vigil::bench::Clock;
using vigil::bench::Since;

constexpr int64_t kStart = 1'790'000'000'000'000;    // 2026-09, in microseconds
constexpr int64_t kSpan = 60LL * 86400 * 1'000'000;  // 60 days
constexpr int kHosts = 1000, kRanksPerHost = 8;
const char* kKinds[] = {
    "process_exit", "rank_hang",  "host_lost",       "gpu_fault",        "straggler",
    "nonfinite",    "loss_spike", "grad_norm_spike", "collective_error", "checkpoint_write_failed",
    "gpu_thermal"};
constexpr int kKindCount = sizeof(kKinds) / sizeof(kKinds[0]);
// The events table's secondary indices.
constexpr const char* kDropEventIndices =
    "DROP INDEX events_run_time; DROP INDEX events_time; DROP INDEX events_kind_time; "
    "DROP INDEX events_host_time; DROP INDEX events_rank_time;";

std::string Host(int h) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "host-%04d", h);
  return buf;
}

// Event i, deterministic: time grows with i, the rest is scrambled.
EventRow MakeEvent(int64_t run, int64_t i, int64_t n) {
  const uint64_t x = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ULL;
  EventRow e;
  e.run_id = run;
  e.time_us = kStart + i * (kSpan / n);
  e.kind = kKinds[(x >> 7) % kKindCount];
  const int host = static_cast<int>((x >> 17) % kHosts);
  e.host = Host(host);
  e.rank = host * kRanksPerHost + static_cast<int>((x >> 29) % kRanksPerHost);
  e.step = i / 10;
  e.detail_json = "{\"exit_code\":" + std::to_string((x >> 37) % 256) +
                  ",\"generation\":" + std::to_string(i / 1000) + "}";
  return e;
}

// Events [first, end) of n, through AddEvents; the time it took.
struct Inserted {
  vigil::Result<std::vector<int64_t>> ids;
  double seconds;
};
Inserted InsertBatch(Logbook& lb, int64_t run, int64_t first, int64_t end, int64_t n,
                     std::vector<EventRow>* rows) {
  rows->clear();
  for (int64_t i = first; i < end; ++i) rows->push_back(MakeEvent(run, i, n));
  const auto t0 = Clock::now();
  auto ids = lb.AddEvents(*rows);
  return {std::move(ids), Since(t0)};
}

struct Timing {
  double p50_ms = 0, p99_ms = 0;
};

Timing Percentiles(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms[static_cast<size_t>(q * (ms.size() - 1) + 0.5)]; };
  return {at(0.5), at(0.99)};
}

Timing Measure(int reps, const std::function<size_t()>& query, size_t* rows) {
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    *rows = query();
    ms.push_back(Since(t0) * 1000.0);
  }
  return Percentiles(std::move(ms));
}

double PythonBaseline(const std::string& dir, int64_t rows, bool indexed) {
  const std::string db = dir + "/python-baseline.sqlite";
  std::filesystem::remove(db);
  // The same table as the logbook's events, with its indices or none; rows built up front.
  const std::string script =
      "import sqlite3, time, sys\n"
      "n = int(sys.argv[2])\n"
      "c = sqlite3.connect(sys.argv[1])\n"
      "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA synchronous=FULL')\n"
      "c.executescript('''CREATE TABLE events (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL,\n"
      "  generation_id INTEGER, time_us INTEGER NOT NULL, kind TEXT NOT NULL, host TEXT NOT NULL,\n"
      "  rank INTEGER, step INTEGER, detail TEXT NOT NULL);''')\n"
      "if sys.argv[3] == '1': c.executescript('''\n"
      "  CREATE INDEX a ON events(run_id, time_us); CREATE INDEX b ON events(time_us);\n"
      "  CREATE INDEX c ON events(kind, time_us); CREATE INDEX d ON events(host, time_us);\n"
      "  CREATE INDEX e ON events(rank, time_us);''')\n"
      "kinds = ['process_exit', 'rank_hang', 'host_lost', 'gpu_fault', 'straggler']\n"
      "rows = [(1, None, 1790000000000000 + i * 518400, kinds[i % 5], 'host-%04d' % (i % 1000),\n"
      "         i % 8000, i // 10, '{\"exit_code\":1,\"generation\":%d}' % (i // 1000))\n"
      "        for i in range(n)]\n"
      "t = time.perf_counter()\n"
      "c.execute('BEGIN')\n"
      "c.executemany('INSERT INTO events (run_id, generation_id, time_us, kind, host, rank, step,"
      " detail) VALUES (?,?,?,?,?,?,?,?)', rows)\n"
      "c.execute('COMMIT')\n"
      "print(n / (time.perf_counter() - t))\n";
  const std::string py = dir + "/baseline.py";
  FILE* f = std::fopen(py.c_str(), "w");
  if (!f) return 0;
  std::fputs(script.c_str(), f);
  std::fclose(f);
  const std::string cmd =
      "python3 " + py + " " + db + " " + std::to_string(rows) + (indexed ? " 1" : " 0");
  FILE* p = ::popen(cmd.c_str(), "r");
  double rate = 0;
  if (p) {
    if (std::fscanf(p, "%lf", &rate) != 1) rate = 0;
    ::pclose(p);
  }
  std::filesystem::remove(db);
  return rate;
}

// The CLI's typical queries over the bench's logbook of `n` events in run `run`.
struct Query {
  const char* name;
  std::function<size_t(Logbook&)> run;
};
std::vector<Query> Queries(int64_t run, int64_t n) {
  const int64_t end = kStart + kSpan;
  auto ls = [](EntryFilter f) {
    return [f](Logbook& lb) {
      auto r = lb.Entries(f);
      return r.ok() ? r->size() : 0;
    };
  };
  EntryFilter newest;
  newest.last = 50;
  EntryFilter hour;
  hour.run_id = run;
  hour.since_us = end - 3600LL * 1'000'000;
  hour.last = 100;
  EntryFilter kind;
  kind.kinds = {"rank_hang"};
  kind.since_us = end - 86400LL * 1'000'000;
  kind.last = 100;
  EntryFilter host;
  host.host = Host(7);
  host.last = 100;
  EntryFilter rank;
  rank.rank = 7 * kRanksPerHost + 3;
  rank.last = 100;
  EntryFilter human;
  human.actor = "human";
  human.last = 100;
  const int64_t some_event = n / 2;
  return {
      {"ls -n 50", ls(newest)},
      {"ls --run 1 --since 1h -n 100", ls(hour)},
      {"ls --kind rank_hang --since 1d -n 100", ls(kind)},
      {"ls --host host-0007 -n 100", ls(host)},
      {"ls --rank 59 -n 100", ls(rank)},
      {"ls --actor human -n 100", ls(human)},
      {"show ID (event + what answered it)",
       [some_event](Logbook& lb) {
         auto e = lb.Event(some_event);
         auto i = lb.InterventionsOf(some_event);
         return (e.ok() && e->has_value() ? 1 : 0) + (i.ok() ? i->size() : 0);
       }},
      {"ls -f poll (newest ids, then after them)",
       [](Logbook& lb) {
         auto ids = lb.MaxIds();
         EntryFilter f;
         f.after = ids.value();
         f.after.event -= 5;
         f.upto = ids.value();
         auto r = lb.Entries(f);
         return r.ok() ? r->size() : 0;
       }},
  };
}

// One CLI call's query in this fresh process, as `vigil logbook` runs it:
// open, query, close. Prints its milliseconds and rows.
int OneCall(const std::string& path, size_t query, int64_t run, int64_t n) {
  const auto queries = Queries(run, n);
  if (query >= queries.size()) return 2;
  const auto t0 = Clock::now();
  auto opened = Logbook::Open(path, false);
  if (!opened.ok()) return 1;
  const size_t rows = queries[query].run(*opened.value());
  opened.value().reset();
  std::printf("%.6f %zu\n", Since(t0) * 1000.0, rows);
  return 0;
}

// `query` as R CLI calls, each a fresh process (this program, --one-call):
// a fresh process faults in each heap page SQLite's page cache takes, which
// a loop in one process would not show.
Timing MeasureCalls(int reps, const std::string& dir, size_t query, int64_t run, int64_t n,
                    size_t* rows) {
  const std::string command = "'" + std::filesystem::read_symlink("/proc/self/exe").string() +
                              "' --one-call " + std::to_string(query) + " --dir '" + dir +
                              "' --run " + std::to_string(run) + " --events " + std::to_string(n);
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    FILE* child = ::popen(command.c_str(), "r");
    double t = 0;
    if (!child || std::fscanf(child, "%lf %zu", &t, rows) != 2) t = -1;
    if (child && ::pclose(child) != 0) t = -1;
    if (t < 0) {
      std::fprintf(stderr, "%s failed\n", command.c_str());
      std::exit(1);
    }
    ms.push_back(t);
  }
  return Percentiles(std::move(ms));
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = std::atoll(Arg(argc, argv, "--events", "10000000"));
  const int reps = std::atoi(Arg(argc, argv, "--reps", "200"));
  const std::string dir = Arg(argc, argv, "--dir", "/tmp/vigil-logbook-bench");
  if (const char* query = Arg(argc, argv, "--one-call", nullptr)) {
    return OneCall(dir + "/logbook.sqlite", std::strtoul(query, nullptr, 10),
                   std::atoll(Arg(argc, argv, "--run", "1")), n);
  }
  bool keep = false;
  for (int i = 1; i < argc; ++i) keep |= std::string(argv[i]) == "--keep";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/logbook.sqlite";
  auto opened = Logbook::Open(path, true);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  Logbook& lb = *opened.value();
  const int64_t run = lb.CreateRun("bench", "", "", dir, kStart).value();

  // Inserts: events in batches; interventions and notes alongside (one by one
  // for interventions would be one sync each: they go in their own batches
  // of rows too, through the same statement shape).
  const int64_t batch = 50'000;
  double insert_seconds = 0;
  std::vector<EventRow> rows;
  rows.reserve(batch);
  int64_t interventions = 0;
  for (int64_t first = 0; first < n; first += batch) {
    auto [ids, seconds] = InsertBatch(lb, run, first, std::min(n, first + batch), n, &rows);
    insert_seconds += seconds;
    if (!ids.ok()) {
      std::fprintf(stderr, "insert: %s\n", ids.status().ToString().c_str());
      return 1;
    }
    std::vector<InterventionRow> answers;
    for (size_t k = 0; k < rows.size(); k += 4) {
      InterventionRow iv;
      iv.run_id = run;
      iv.event_id = ids.value()[k];
      iv.time_us = rows[k].time_us + 1000;
      iv.action = k % 8 == 0 ? "restart_from_latest" : "continue_training";
      iv.actor = (first + static_cast<int64_t>(k)) % 4000 == 0 ? "human:oncall" : "auto:restart";
      iv.params_json = "{\"checkpoint_step\":" + std::to_string(rows[k].step.value_or(0)) + "}";
      answers.push_back(iv);
    }
    if (!lb.AddInterventions(answers).ok()) return 1;
    interventions += static_cast<int64_t>(answers.size());
    if ((first / batch) % 40 == 0) {
      std::fprintf(stderr, "  %lld events...\n", static_cast<long long>(first + rows.size()));
    }
  }
  for (int k = 0; k < 300; ++k) {
    (void)lb.AddNote({0, run, kStart + k * (kSpan / 300), "oncall", "note " + std::to_string(k)});
  }
  const double rate = static_cast<double>(n) / insert_seconds;
  const double python = PythonBaseline(dir, 1'000'000, true);
  const double python_bare = PythonBaseline(dir, 1'000'000, false);
  // Into a fresh logbook of 1M events: the same 50k batches, then the same
  // with the events table's secondary indices dropped (what they cost), then
  // vigild's path: events queued one by one to the LogbookWriter as fast as
  // they come, committed in whatever batches have queued meanwhile.
  enum class Into { kBatches, kBatchesWithoutIndices, kWriter };
  auto fresh_rate = [&](Into into) {
    const std::string fresh = dir + "/fresh.sqlite";
    std::filesystem::remove(fresh);
    double r = 0;
    {
      auto opened = Logbook::Open(fresh, true);
      if (!opened.ok()) return 0.0;
      if (into == Into::kBatchesWithoutIndices) {
        sqlite3* db = nullptr;
        sqlite3_open(fresh.c_str(), &db);
        sqlite3_exec(db, kDropEventIndices, nullptr, nullptr, nullptr);
        sqlite3_close(db);
      }
      const int64_t fresh_run = opened.value()->CreateRun("fresh", "", "", dir, kStart).value();
      const int64_t m = std::min<int64_t>(n, 1'000'000);
      if (into == Into::kWriter) {
        opened.value().reset();
        auto w = vigil::LogbookWriter::Open(fresh);
        if (!w.ok()) return 0.0;
        std::vector<EventRow> all;
        all.reserve(m);
        for (int64_t i = 0; i < m; ++i) all.push_back(MakeEvent(fresh_run, i, m));
        const auto t0 = Clock::now();
        for (auto& e : all) w.value()->AddEvent(std::move(e));
        w.value()->Flush();
        r = static_cast<double>(m) / Since(t0);
      } else {
        double seconds = 0;
        for (int64_t first = 0; first < m; first += batch) {
          seconds +=
              InsertBatch(*opened.value(), fresh_run, first, std::min(m, first + batch), m, &rows)
                  .seconds;
        }
        r = static_cast<double>(m) / seconds;
      }
    }
    std::filesystem::remove(fresh);
    std::filesystem::remove(fresh + "-wal");
    std::filesystem::remove(fresh + "-shm");
    return r;
  };
  const double bare_rate = fresh_rate(Into::kBatchesWithoutIndices);
  const double fresh_batches = fresh_rate(Into::kBatches);
  const double fresh_writer = fresh_rate(Into::kWriter);

  std::printf("logbook of %lld events, %lld interventions, 300 notes: %.1f MB\n",
              static_cast<long long>(n), static_cast<long long>(interventions),
              static_cast<double>(std::filesystem::file_size(path)) / 1e6);
  std::printf(
      "batched insert (AddEvents, 50k a transaction, synchronous=FULL): %.2fM events/s"
      "   [target >= 1M/s]\n"
      "  Python sqlite3 executemany, the same table and 5 indices, 1M rows: %.2fM events/s\n"
      "  AddEvents, the events table without its 5 secondary indices, 1M rows: %.2fM events/s\n"
      "  Python sqlite3 executemany, the same table without indices, 1M rows: %.2fM events/s\n"
      "vigild's LogbookWriter (one AddEvent call each, batched as they queue), a fresh logbook "
      "of 1M: %.2fM events/s   [AddEvents, 50k batches, the same: %.2fM events/s]\n",
      rate / 1e6, python / 1e6, bare_rate / 1e6, python_bare / 1e6, fresh_writer / 1e6,
      fresh_batches / 1e6);

  const int64_t end = kStart + kSpan;
  const std::vector<Query> queries = Queries(run, n);
  // Each query on the connection that wrote the file (warm: what the HTTP
  // API and a follower see), then as one CLI call does it, in a fresh
  // process: open the file, query, close.
  std::vector<Timing> indexed, per_call;
  std::vector<size_t> counts(queries.size());
  for (size_t q = 0; q < queries.size(); ++q) {
    indexed.push_back(Measure(
        reps, [&] { return queries[q].run(lb); }, &counts[q]));
    size_t rows = 0;
    per_call.push_back(MeasureCalls(reps, dir, q, run, n, &rows));
    if (rows != counts[q]) {
      std::fprintf(stderr, "%s: %zu rows in a fresh process, %zu warm\n", queries[q].name, rows,
                   counts[q]);
      return 1;
    }
  }
  const auto t_stats = Clock::now();
  auto stats = lb.Stats(run, end);
  const double stats_s = Since(t_stats);
  if (keep) {
    for (size_t q = 0; q < queries.size(); ++q) {
      std::printf("%-44s %6zu %10.3f %10.3f %10.3f %10.3f\n", queries[q].name, counts[q],
                  indexed[q].p50_ms, indexed[q].p99_ms, per_call[q].p50_ms, per_call[q].p99_ms);
    }
    std::printf("kept %s\n", path.c_str());
    return 0;
  }

  // The same queries with every secondary index dropped (a file as SQLite
  // would hold it without them); primary keys stay.
  {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, kDropEventIndices, nullptr, nullptr, nullptr);
    sqlite3_exec(db,
                 "DROP INDEX interventions_run_time; DROP INDEX interventions_event; DROP INDEX "
                 "interventions_time; DROP INDEX interventions_actor_time; DROP INDEX "
                 "interventions_host_time; DROP INDEX interventions_rank_time; DROP INDEX "
                 "interventions_action_time; DROP INDEX notes_run_time;",
                 nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  const int slow_reps = std::max(3, std::min(reps, 5));
  std::printf("\n%-42s %5s %17s %17s %19s\n", "", "", "warm connection", "one CLI call",
              "no index (warm)");
  std::printf("%-42s %5s %8s %8s %8s %8s %9s %9s\n", "query", "rows", "p50 ms", "p99 ms", "p50 ms",
              "p99 ms", "p50 ms", "p99 ms");
  bool warm_fast = true, call_fast = true;
  for (size_t q = 0; q < queries.size(); ++q) {
    size_t rows_without = 0;
    const Timing bare = Measure(
        slow_reps, [&] { return queries[q].run(lb); }, &rows_without);
    std::printf("%-42s %5zu %8.3f %8.3f %8.3f %8.3f %9.1f %9.1f%s\n", queries[q].name, counts[q],
                indexed[q].p50_ms, indexed[q].p99_ms, per_call[q].p50_ms, per_call[q].p99_ms,
                bare.p50_ms, bare.p99_ms,
                rows_without == counts[q] ? "" : "  (row counts differ!)");
    warm_fast &= indexed[q].p99_ms <= 1.0;
    call_fast &= per_call[q].p99_ms <= 1.0;
  }
  std::printf(
      "\nindexed p99 <= 1 ms for every query: warm %s, one CLI call %s (%d repetitions; "
      "without indices %d)\n",
      warm_fast ? "yes" : "NO", call_fast ? "yes" : "NO", reps, slow_reps);
  std::printf("logbook stats over the whole run (a full pass, not indexed): %.2f s%s\n", stats_s,
              stats.ok() ? "" : " (failed)");
  std::filesystem::remove_all(dir);
  return 0;
}
