#include "cli/slurm_launcher.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/run_follow.h"
#include "common/fs.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "common/vigild_addr.h"
#include "common/vocabulary.h"
#include "logbook/logbook.h"

namespace vigil::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// How long the run's end may take to show in Slurm (the batch step done:
// vigild and the agents' steps gone) before the follower reads the logbook anyway.
constexpr double kJobEndAfterRunEndSeconds = 120.0;
// How long squeue may fail (slurmctld down or unreachable) before the
// follower stops following; the job itself goes on.
constexpr double kSlurmUnansweredSeconds = 600.0;

Result<ProcessOutcome> Slurm(std::vector<std::string> argv, int timeout_ms) {
  SpawnOptions o;
  o.argv = std::move(argv);
  return RunProcess(o, std::chrono::milliseconds(timeout_ms));
}

// A shell word: single-quoted.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::string SelfBinary() { return fs::read_symlink("/proc/self/exe").string(); }

// The Slurm job's state (squeue), "" once Slurm no longer lists it; nullopt
// when Slurm could not be asked.
std::optional<std::string> QueueState(const std::string& job_id, int timeout_ms) {
  auto r = Slurm({"squeue", "--noheader", "--jobs=" + job_id, "--states=all", "--format=%T"},
                 timeout_ms);
  if (!r.ok()) return std::nullopt;
  if (!r->ok()) {
    // An id slurmctld has forgotten (the job ended a while ago).
    if (r->output.find("Invalid job id") != std::string::npos) return std::string();
    return std::nullopt;
  }
  return Trim(r->output);
}

// Whether the job's batch step is over: vigild and its agents are gone
// (COMPLETING: what is left is Slurm's own clean-up, which waits for a
// dead node to be declared DOWN).
bool BatchIsOver(const std::string& state) {
  return state != "PENDING" && state != "RUNNING" && state != "CONFIGURING" &&
         state != "SUSPENDED" && state != "REQUEUED" && state != "RESIZING" &&
         state != "SIGNALING" && state != "STAGE_OUT";
}

}  // namespace

Result<std::optional<SlurmAllocation>> CurrentSlurmAllocation(int command_timeout_ms) {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job) return std::optional<SlurmAllocation>();
  SlurmAllocation a;
  a.job_id = job;
  const char* list = std::getenv("SLURM_JOB_NODELIST");
  if (!list || !*list) list = std::getenv("SLURM_NODELIST");
  if (!list || !*list)
    return Status::FailedPrecondition("SLURM_JOB_ID is set (" + a.job_id +
                                      ") but SLURM_JOB_NODELIST is not: not a Slurm allocation");
  auto r = Slurm({"scontrol", "show", "hostnames", list}, command_timeout_ms);
  if (!r.ok()) return Status::Unavailable("scontrol show hostnames: " + r.status().message());
  if (!r->ok())
    return Status::Unavailable("scontrol show hostnames " + std::string(list) + " " +
                               r->Describe() + ": " + Trim(r->output));
  std::istringstream in(r->output);
  for (std::string node; std::getline(in, node);) {
    node = Trim(node);
    if (!node.empty()) a.nodes.push_back(node);
  }
  if (a.nodes.empty())
    return Status::Unavailable("Slurm job " + a.job_id + " has no nodes (" + list + ")");
  return std::optional<SlurmAllocation>(std::move(a));
}

std::vector<std::string> SrunStep(const std::string& node, const std::string& step_name, int gpus,
                                  const std::vector<std::string>& argv) {
  std::vector<std::string> out = {"srun",
                                  "--nodes=1",
                                  "--ntasks=1",
                                  "--nodelist=" + node,
                                  "--kill-on-bad-exit=0",
                                  "--job-name=" + step_name,
                                  "--unbuffered"};
  // The agent's ranks share its step: it gets the node, not one CPU.
  if (const char* cpus = std::getenv("SLURM_CPUS_ON_NODE");
      cpus && *cpus && std::string(cpus).find_first_not_of("0123456789") == std::string::npos)
    out.push_back(std::string("--cpus-per-task=") + cpus);
  if (gpus > 0) out.push_back("--gres=gpu:" + std::to_string(gpus));
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

namespace {

// WORKDIR/slurm/lock, held (flock) from the check for a live job until the
// new job's id is written: two `vigil run`s submitting one work directory
// at once would both pass the check.
class SubmitLock {
 public:
  explicit SubmitLock(const std::string& path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {}
  ~SubmitLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  SubmitLock(const SubmitLock&) = delete;
  SubmitLock& operator=(const SubmitLock&) = delete;
  // OK, FailedPrecondition when another process holds it, IoError else.
  Status TryLock() const {
    if (fd_ < 0) return Status::IoError(std::string("cannot open the lock: ") + strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return Status::Ok();
    if (errno == EWOULDBLOCK) return Status::FailedPrecondition("held by another vigil run");
    return Status::IoError(std::string("flock: ") + strerror(errno));
  }

 private:
  int fd_;
};

// Submits the job: its id in `job_id`, and 0; else the exit status of
// `vigil run` (2: refused, the work directory is taken; 1: failed), with
// the reason said.
int Submit(const RunArgs& args, const JobSpec& spec, const std::string& workdir,
           std::string* job_id) {
  const int timeout_ms = spec.slurm.command_timeout_ms;
  for (const auto& dir : {workdir, workdir + "/logs", workdir + "/slurm"}) {
    if (Status st = MakeDirs(dir); !st.ok()) {
      std::fprintf(stderr, "vigil run: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  SubmitLock lock(workdir + "/slurm/lock");
  if (Status st = lock.TryLock(); !st.ok()) {
    std::fprintf(stderr, "vigil run: %s/slurm/lock: %s; nothing submitted\n", workdir.c_str(),
                 st.message().c_str());
    return st.code() == StatusCode::kFailedPrecondition ? 2 : 1;
  }
  // One Slurm job per work directory at a time: a second would take the
  // first one's run over from under it.
  const std::string job_file = workdir + "/slurm/job_id";
  if (auto previous = ReadFile(job_file); previous.ok() && !Trim(previous.value()).empty()) {
    const std::string id = Trim(previous.value());
    auto state = QueueState(id, timeout_ms);
    if (!state) {
      std::fprintf(stderr,
                   "vigil run: cannot ask Slurm whether job %s (submitted for %s) is still "
                   "there; nothing submitted\n",
                   id.c_str(), workdir.c_str());
      return 1;
    }
    if (!state->empty() && !BatchIsOver(*state)) {
      std::fprintf(stderr,
                   "vigil run: Slurm job %s (%s) already runs this work directory (%s): follow "
                   "it with `vigil logbook ls -f --workdir %s`, or end it with `scancel %s`\n",
                   id.c_str(), state->c_str(), workdir.c_str(), workdir.c_str(), id.c_str());
      return 2;
    }
  }
  // vigild writes its address here once it runs in the allocation; one left
  // by an earlier run must not be taken for it.
  fs::remove(VigildAddrPath(workdir));

  // The batch script runs this same vigil in the allocation, on the same
  // work directory and job, with the same faults to inject.
  std::string line = "exec " + Quote(SelfBinary()) + " run --launcher slurm --workdir " +
                     Quote(workdir) + " --seed " + std::to_string(args.seed);
  for (const auto& c : args.chaos) line += " --chaos " + Quote(c);
  line += " " + Quote(fs::absolute(args.job_file).string());
  const std::string script = workdir + "/slurm/batch.sh";
  const std::string text = "#!/bin/sh\n# Written by `vigil run --launcher slurm` for job " +
                           spec.name +
                           ":\n# vigild and the agents' steps run from here, in the "
                           "allocation.\n" +
                           line + "\n";
  if (Status st = WriteFileAtomic(script, text, 0755); !st.ok()) {
    std::fprintf(stderr, "vigil run: %s\n", st.ToString().c_str());
    return 1;
  }
  const int nodes = spec.world.hosts + spec.world.spares;
  std::vector<std::string> sbatch = {
      "sbatch", "--parsable", "--no-kill",
      // A node lost is vigil's to answer, on the
      // spares; a requeue would start over elsewhere.
      "--no-requeue", "--nodes=" + std::to_string(nodes), "--ntasks-per-node=1",
      "--job-name=vigil-" + spec.name, "--chdir=" + workdir,
      "--output=" + workdir + "/logs/slurm-%j.out", "--open-mode=append"};
  if (spec.slurm.exclusive) sbatch.push_back("--exclusive");
  if (const int gpus = spec.slurm.GpusPerNode(spec.world.device, spec.world.ranks_per_host))
    sbatch.push_back("--gpus-per-node=" + std::to_string(gpus));
  if (!spec.slurm.partition.empty()) sbatch.push_back("--partition=" + spec.slurm.partition);
  if (!spec.slurm.time_limit.empty()) sbatch.push_back("--time=" + spec.slurm.time_limit);
  sbatch.push_back(script);
  if (Interrupted()) {
    std::fprintf(stderr, "vigil run: interrupted; nothing submitted\n");
    return 1;
  }
  // sbatch runs in a process group of its own: a Ctrl-C meanwhile reaches
  // only this process, which then cancels the job it submitted.
  auto submitted = Slurm(sbatch, timeout_ms);
  if (!submitted.ok() || !submitted->ok()) {
    std::fprintf(stderr, "vigil run: sbatch failed: %s\n",
                 submitted.ok() ? (submitted->Describe() + ": " + Trim(submitted->output)).c_str()
                                : submitted.status().ToString().c_str());
    return 1;
  }
  // --parsable: "ID" or "ID;CLUSTER".
  std::string id = Trim(submitted->output);
  id = id.substr(0, id.find(';'));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos) {
    std::fprintf(stderr, "vigil run: sbatch said %s, not a job id\n",
                 Trim(submitted->output).c_str());
    return 1;
  }
  if (Status st = WriteFileAtomic(job_file, id + "\n"); !st.ok())
    std::fprintf(stderr, "vigil run: %s\n", st.ToString().c_str());
  *job_id = id;
  return 0;
}

// Follows the submitted job to its end: vigild's HTTP status while it runs;
// the logbook only once the batch step is over (SQLite's WAL is for
// processes on one host: this one may be on another than vigild, over a
// network file system). The exit status of `vigil run`.
int Follow(const JobSpec& spec, const std::string& workdir, const std::string& job_id,
           bool json_output, std::optional<double> entropy_floor) {
  const int timeout_ms = spec.slurm.command_timeout_ms;
  const std::string slurm_out = workdir + "/logs/slurm-" + job_id + ".out";
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  ProgressLine progress(!json_output);
  int64_t run_id = 0;
  std::string http, queue_state = "PENDING", said_state;
  double last_queue_poll = -1e9, last_queue_answer = 0, run_over_at = -1;
  // The SIGINTs counted when scancel was run (-1: not yet): one after it
  // stops following; those before it (two during a slow squeue) are one cancel.
  int sigints_at_cancel = -1;
  const double poll_s = spec.slurm.queue_poll_ms / 1000.0;
  auto detach = [&](const std::string& why) {
    progress.Done();
    std::fprintf(stderr,
                 "\nvigil run: %s: no longer following; Slurm job %s goes on (`squeue -j %s`, "
                 "`vigil logbook ls -f --workdir %s`; `scancel %s` ends it)\n",
                 why.c_str(), job_id.c_str(), job_id.c_str(), workdir.c_str(), job_id.c_str());
    return 1;
  };
  while (true) {
    if (Interrupts(SIGTERM) > 0) return detach("SIGTERM");
    if (sigints_at_cancel >= 0 && Interrupts(SIGINT) > sigints_at_cancel)
      return detach("interrupted again");
    if (Interrupts(SIGINT) > 0 && sigints_at_cancel < 0) {
      std::fprintf(stderr,
                   "\nvigil run: interrupted; cancelling Slurm job %s (Ctrl-C again: stop "
                   "following, the job goes on)\n",
                   job_id.c_str());
      auto r = Slurm({"scancel", job_id}, timeout_ms);
      if (!r.ok() || !r->ok())
        std::fprintf(stderr, "vigil run: scancel %s failed: %s\n", job_id.c_str(),
                     r.ok() ? Trim(r->output).c_str() : r.status().ToString().c_str());
      sigints_at_cancel = Interrupts(SIGINT);
      last_queue_poll = -1e9;
    }
    // vigild's address (it may move: a vigild started again takes the run over).
    if (auto a = ReadVigildAddr(workdir); a.ok()) {
      http = a->http;
      if (a->run_id > 0) run_id = a->run_id;
    }
    if (!http.empty() && run_over_at < 0) {
      auto resp = ApiGet(workdir, http, "/api/v1/status", std::chrono::milliseconds(1000));
      if (resp.ok() && resp->status == 200) {
        const json s = json::parse(resp->body, nullptr, false);
        progress.Show(s, elapsed());
        const std::string state = s.is_object() ? s.value("state", "") : "";
        if (IsRunOver(state)) {
          run_over_at = elapsed();
          last_queue_poll = -1e9;  // from now on, every second
        }
      }
    }
    const double every = run_over_at >= 0 || sigints_at_cancel >= 0 ? 1.0 : poll_s;
    if (elapsed() - last_queue_poll >= every) {
      last_queue_poll = elapsed();
      if (auto st = QueueState(job_id, timeout_ms)) {
        last_queue_answer = elapsed();
        queue_state = *st;
        if (queue_state != said_state && queue_state == "PENDING" && !json_output) {
          std::fprintf(stderr, "vigil run: Slurm job %s is waiting in the queue (squeue -j %s)\n",
                       job_id.c_str(), job_id.c_str());
        }
        said_state = queue_state;
        if (BatchIsOver(queue_state)) break;
      } else if (elapsed() - last_queue_answer > kSlurmUnansweredSeconds) {
        return detach("Slurm has not answered squeue for " +
                      FormatDuration(kSlurmUnansweredSeconds));
      }
    }
    if (run_over_at >= 0 && elapsed() - run_over_at > kJobEndAfterRunEndSeconds) {
      std::fprintf(stderr,
                   "\nvigil run: the run is over, but Slurm still lists job %s as %s after "
                   "%.0f s; reading the logbook anyway\n",
                   job_id.c_str(), queue_state.c_str(), kJobEndAfterRunEndSeconds);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  progress.Done();
  std::optional<std::string> outcome;
  if (run_id > 0) {
    auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
    auto row = lb.ok() ? lb.value()->Run(run_id) : Result<RunRow>(lb.status());
    if (row.ok()) outcome = row->status;
  }
  if (!outcome || !IsRunOver(*outcome)) {
    std::fprintf(stderr, "vigil run: Slurm job %s ended (%s) %s; see %s\n", job_id.c_str(),
                 queue_state.empty() ? "no longer listed" : queue_state.c_str(),
                 run_id > 0 ? "before its run was recorded as over" : "before vigild started",
                 slurm_out.c_str());
  }
  if (run_id > 0) {
    const std::string summary =
        PrintRunReport(workdir, run_id, elapsed(), entropy_floor, json_output);
    if (json_output) std::cout << summary << std::endl;
  }
  return outcome && *outcome == job_state::kSucceeded ? 0 : 1;
}

}  // namespace

int SubmitToSlurm(const RunArgs& args, const JobSpec& spec, const std::string& workdir,
                  std::optional<double> entropy_floor) {
  const bool json_output = args.output == "json";
  // From before sbatch: a Ctrl-C while it runs cancels the job it submits.
  InstallInterruptHandler();
  std::string job_id;
  if (int rc = Submit(args, spec, workdir, &job_id); rc != 0) return rc;
  if (!json_output) {
    std::fprintf(stderr,
                 "vigil: job %s submitted as Slurm job %s (%d nodes: %d hosts + %d spares); "
                 "workdir %s; its output %s/logs/slurm-%s.out. Ctrl-C cancels it; closing this "
                 "terminal (or SIGTERM) leaves it running\n",
                 spec.name.c_str(), job_id.c_str(), spec.world.hosts + spec.world.spares,
                 spec.world.hosts, spec.world.spares, workdir.c_str(), workdir.c_str(),
                 job_id.c_str());
  }
  return Follow(spec, workdir, job_id, json_output, entropy_floor);
}

}  // namespace vigil::cli
