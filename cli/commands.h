// Subcommands of `vigil`. Each returns the process exit code: 0 success,
// 1 a failed job or check, 2 bad usage or input.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil {
class Logbook;
}

namespace vigil::cli {

struct RunArgs {
  std::string job_file;
  std::string workdir;
  std::vector<std::string> chaos;
  uint64_t seed = 1;            // of a random:COUNT chaos schedule
  std::string output = "text";  // text | json
  std::string launcher;         // local | slurm; empty: the job's `launcher`
};
int RunJob(const RunArgs& args);

// `vigil logbook ...`: `workdir` is a job's work directory (its
// logbook.sqlite) or the logbook file itself. The file is read directly, so
// these work whether vigild is up or not. Bad input (a missing or foreign
// file, a newer schema, a bad time) is one line on stderr and exit 2.
struct LogbookArgs {
  std::string workdir;
  int64_t run = 0;               // 0: all runs (note, stats: the newest)
  std::string output = "table";  // table | json | csv (show, stats: table | json)
  // ls
  std::string since, until;  // see ParseTimePoint
  std::vector<std::string> kinds;
  std::string host;
  int rank = -1;
  std::string actor;
  size_t last = 0;
  bool follow = false;
  // show
  int64_t event_id = 0;
  // note
  std::string author, text;
  // export
  std::string format = "markdown";
  std::string out_file;  // empty or "-": stdout
};
int LogbookLs(const LogbookArgs& args);
int LogbookShow(const LogbookArgs& args);
int LogbookNote(const LogbookArgs& args);
int LogbookStats(const LogbookArgs& args);
int LogbookExport(const LogbookArgs& args);

// The logbook of a work directory (or the file named), or nullptr after
// saying why on stderr.
std::unique_ptr<Logbook> OpenLogbookOrSay(const std::string& workdir);
// The run asked for (0: the newest); 0 after saying why when there is none.
int64_t NewestRunOrSay(Logbook& lb, int64_t asked);
// A run's chronicle: per day, what broke, what was done and by whom.
Result<std::string> ChronicleMarkdown(Logbook& lb, int64_t run_id);

// `vigil report`: one self-contained HTML page about a run (`out_file`,
// default stdout): the loss curve with every detection and intervention
// marked, the generations on a timeline, failures by class and host.
int Report(const LogbookArgs& args);
Result<std::string> ReportHtml(Logbook& lb, int64_t run_id);
// Writes `text` to `out_file` ("" or "-": stdout); 1 after saying why on
// stderr (prefixed with `command`) when it cannot.
int WriteOutputOrSay(const std::string& out_file, const std::string& text, const char* command);

// $USER, else the account's name.
std::string CurrentUser();

struct DataPrepareArgs {
  std::vector<std::string> inputs;
  std::string output;
};
int DataPrepare(const DataPrepareArgs& args);
int DataVerify(const std::string& path);

struct CkptArgs {
  std::string path;              // a checkpoint directory, or (ls) a folder of them
  std::string output = "table";  // table | json
};
int CkptLs(const CkptArgs& args);
int CkptVerify(const CkptArgs& args);  // 1 names the failing shard and tensor
int CkptInspect(const CkptArgs& args);

struct CkptReshardArgs {
  std::string src, dst;  // a checkpoint; the folder to write step-<N> into
  int world = 0;
};
int CkptReshard(const CkptReshardArgs& args);

struct ControlArgs {
  std::string workdir;
  std::string actor;  // default: $USER
  std::string note;   // resume: why (recorded in the logbook)
  std::string fault;  // chaos: KIND:TARGET[@STEP]
};
int Resume(const ControlArgs& args);         // continue a paused job
int Chaos(const ControlArgs& args);          // inject a fault into a running job
int PlaybookCheck(const std::string& path);  // 1: invalid (file, line and field named)

// Prints a run's summary and logbook (used at the end of `vigil run`).
// entropy_floor: the job's data source's (DataSource::EntropyRateNats), or
// nullopt where it has none; the summary says so rather than print another
// source's. Returns the JSON summary line.
std::string PrintRunReport(const std::string& workdir, int64_t run_id, double wall_seconds,
                           std::optional<double> entropy_floor, bool json_only);

}  // namespace vigil::cli
