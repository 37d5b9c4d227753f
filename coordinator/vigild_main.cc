// vigild: the coordinator daemon of one job. Normally started by `vigil run`
// (which starts it again if it dies). Started on a work directory whose
// last run of the job never finished, it takes that run over (takeover.h).
#include <utility>

#include <signal.h>
#include <unistd.h>
#include <boost/asio.hpp>

#include <cstring>
#include <filesystem>
#include <optional>

#include <CLI/CLI.hpp>

#include "common/fs.h"
#include "common/util.h"
#include "common/vigild_addr.h"
#include "coordinator/coordinator.h"

namespace {

// A vigild SIGSTOPped in the middle of a logbook transaction holds the
// file's write lock for as long as it stays stopped, and no vigild can take
// its run over. The predecessor vigild.addr names, if it is a stopped
// vigild on this host, is killed (fenced for good: it would be fenced out
// of the logbook on waking anyway). True if one was, and is gone.
bool KillStoppedPredecessor(const std::string& workdir,
                            const std::shared_ptr<spdlog::logger>& log) {
  auto addr = vigil::ReadVigildAddr(workdir);
  const int pid = addr.ok() ? addr->pid : 0;
  if (pid <= 0 || pid == ::getpid()) return false;
  const std::string proc = "/proc/" + std::to_string(pid);
  auto comm = vigil::ReadFile(proc + "/comm");
  auto stat = vigil::ReadFile(proc + "/stat");
  if (!comm.ok() || !stat.ok() || comm.value().rfind("vigild", 0) != 0) return false;
  const auto paren = stat.value().rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.value().size() ||
      stat.value()[paren + 2] != 'T')
    return false;
  log->error("vigild pid {} is stopped holding the logbook's lock: killing it", pid);
  ::kill(pid, SIGKILL);
  for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i) {
    auto now = vigil::ReadFile(proc + "/stat");
    if (now.ok() && now.value().find(") Z") != std::string::npos) break;  // dead, not reaped
    ::usleep(20000);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace vigil;
  using namespace vigil::coordinator;
  CLI::App app{"vigild: the vigil coordinator for one job"};
  std::string job_file, workdir, token_file;
  std::vector<std::string> chaos_specs;
  CoordinatorOptions options;
  app.add_option("--job", job_file, "job spec (YAML)")->required();
  app.add_option("--workdir", workdir, "work directory (logbook, checkpoints, logs)")->required();
  app.add_option("--token-file", token_file, "auth token file (mode 0600)")->required();
  app.add_option("--listen", options.listen_host,
                 "address to listen on for agents and ranks (0.0.0.0: every interface)");
  app.add_option("--advertise", options.advertise_host,
                 "address agents and ranks connect to (default: --listen's, or for a wildcard the "
                 "first up, non-loopback IPv4 interface's)");
  app.add_option("--port", options.listen_port, "port for agents and ranks (0: any)");
  app.add_option("--http-port", options.http_port, "port for /metrics and the API (0: any)");
  app.add_option("--chaos", chaos_specs,
                 "inject a fault (repeatable): KIND:RANK@STEP, corrupt-checkpoint:HOW@STEP, "
                 "random:COUNT");
  uint64_t chaos_seed = 1;
  app.add_option("--chaos-seed", chaos_seed, "seed of a random:COUNT schedule");
  app.add_option("--slurm-job", options.slurm_job_id,
                 "the Slurm job vigild runs in (set by `vigil run` under Slurm): recorded in the "
                 "logbook, and each host the playbook cordons is drained in Slurm");
  bool new_run = false;
  app.add_flag("--new-run", new_run,
               "start a new run even if the work directory's last run of this job is unfinished "
               "(by default vigild takes that run over: its vigild died)");
  CLI11_PARSE(app, argc, argv);

  auto log = MakeLogger("vigild");
  auto spec = LoadJobSpec(job_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "vigild: %s\n", spec.status().message().c_str());
    return 2;
  }
  auto faults = ParseChaosFaults(chaos_specs, ChaosPlan::Of(spec.value()), chaos_seed);
  if (!faults.ok()) {
    std::fprintf(stderr, "vigild: %s\n", faults.status().message().c_str());
    return 2;
  }
  options.chaos = std::move(faults.value());
  auto crash_points = CrashPoints::FromEnvironment();
  if (!crash_points.ok()) {
    std::fprintf(stderr, "vigild: %s\n", crash_points.status().message().c_str());
    return 2;
  }
  options.crash_points = crash_points.value();
  auto token = ReadTokenFile(token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "vigild: %s\n", token.status().message().c_str());
    return 2;
  }
  options.token = token.value();
  options.job_file = std::filesystem::absolute(job_file).string();
  options.workdir = std::filesystem::absolute(workdir).string();
  if (Status st = MakeDirs(options.workdir); !st.ok()) {
    std::fprintf(stderr, "vigild: %s\n", st.ToString().c_str());
    return 1;
  }
  // The logbook, writable: a write transaction begins (and is rolled back).
  auto open_writable = [&]() -> Result<std::unique_ptr<Logbook>> {
    auto lb = Logbook::Open(options.workdir + "/logbook.sqlite", true);
    if (!lb.ok()) return lb.status();
    VIGIL_RETURN_IF_ERROR(lb.value()->Begin());
    lb.value()->Rollback();
    return lb;
  };
  auto logbook = open_writable();
  if (!logbook.ok() && logbook.status().message().find("locked") != std::string::npos &&
      KillStoppedPredecessor(options.workdir, log)) {
    logbook = open_writable();
  }
  if (!logbook.ok()) {
    std::fprintf(stderr, "vigild: %s\n", logbook.status().ToString().c_str());
    return 1;
  }
  // The job's last run in this work directory never finished (its vigild
  // died): this vigild takes it over, rather than start again from step 0.
  std::optional<coordinator::RunTakeover> takeover;
  int64_t run_id = 0;
  auto unfinished = FindUnfinishedRun(*logbook.value(), spec->name);
  if (!unfinished.ok()) {
    std::fprintf(stderr, "vigild: %s\n", unfinished.status().ToString().c_str());
    return 1;
  }
  if (unfinished.value() && !new_run) {
    auto t = LoadTakeover(*logbook.value(), *unfinished.value());
    if (!t.ok()) {
      std::fprintf(stderr, "vigild: cannot read run %lld back from the logbook: %s\n",
                   static_cast<long long>(*unfinished.value()), t.status().ToString().c_str());
      return 1;
    }
    if (t->run.config_hash != spec->ConfigHash()) {
      std::fprintf(stderr,
                   "vigild: run %lld of job %s in %s is unfinished, but %s is not the job it "
                   "ran (config hash %s, not %s): take it over with the job it ran, or start a "
                   "new run with --new-run\n",
                   static_cast<long long>(t->run.id), spec->name.c_str(), options.workdir.c_str(),
                   job_file.c_str(), t->run.config_hash.c_str(), spec->ConfigHash().c_str());
      return 2;
    }
    run_id = t->run.id;
    log->warn("run {} of job {} is unfinished ({}): taking it over", run_id, spec->name,
              t->run.status);
    takeover = std::move(t.value());
  } else {
    auto spec_text = ReadFile(job_file);
    auto created = logbook.value()->CreateRun(spec->name, spec_text.ok() ? spec_text.value() : "",
                                              spec->ConfigHash(), options.workdir, NowMicros());
    if (!created.ok()) {
      std::fprintf(stderr, "vigild: %s\n", created.status().ToString().c_str());
      return 1;
    }
    run_id = created.value();
  }

  if (!options.slurm_job_id.empty()) {
    if (Status st = logbook.value()->SetRunSlurmJob(run_id, options.slurm_job_id); !st.ok()) {
      std::fprintf(stderr, "vigild: %s\n", st.ToString().c_str());
      return 1;
    }
  }

  // A client gone mid-write is that connection's error, never vigild's death.
  ::signal(SIGPIPE, SIG_IGN);
  // One descriptor per agent, rank store client and CLI: the soft limit
  // (often 1,024) is raised to the hard one, which a cluster's limits set.
  if (auto files = RaiseOpenFileLimit(); !files.ok()) log->warn("{}", files.status().message());
  boost::asio::io_context io;
  Coordinator coordinator(io, spec.value(), options, std::move(logbook.value()), run_id,
                          std::move(takeover));
  // The handler is in place before Start() publishes vigild.addr: whoever
  // reads the address may signal at once, and the stop must reach the logbook.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log->warn("signal {}: stopping the job", sig);
    coordinator.StopJob("vigild received signal " + std::to_string(sig));
  });
  if (Status st = coordinator.Start(); !st.ok()) {
    std::fprintf(stderr, "vigild: %s\n", st.ToString().c_str());
    return 1;
  }
  io.run();
  return coordinator.exit_code();
}
