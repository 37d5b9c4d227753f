// `vigil run`: starts vigild and one vigil-agent per host of the job (on
// this machine, or as Slurm job steps on the allocation's nodes:
// slurm_launcher.h), supervises vigild (started again if it dies), shows
// progress from vigild's API, and when the job ends prints the summary and
// the run's logbook. Outside an allocation, `launcher: slurm` submits the
// job instead and follows it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/run_follow.h"
#include "cli/slurm_launcher.h"
#include "common/fs.h"
#include "common/http_client.h"
#include "common/job_spec.h"
#include "common/process.h"
#include "common/util.h"
#include "common/vigild_addr.h"
#include "common/vocabulary.h"
#include "coordinator/chaos.h"
#include "coordinator/playbook.h"
#include "logbook/logbook.h"
#include "worker/trainer/data_source.h"

namespace vigil::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string SiblingBinary(const std::string& name) {
  return (fs::read_symlink("/proc/self/exe").parent_path() / name).string();
}

}  // namespace

int RunJob(const RunArgs& args) {
  auto spec = LoadJobSpec(args.job_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "vigil run: %s\n", spec.status().message().c_str());
    return 2;
  }
  // The corpus is input too: refuse a missing or malformed one before starting
  // anything. Its entropy floor is what the summary holds the final loss
  // against (a text corpus has none); the corpus itself is not kept.
  std::optional<double> entropy_floor;
  {
    auto data = trainer::MakeDataSource(spec.value());
    if (!data.ok()) {
      std::fprintf(stderr, "vigil run: %s: data: %s\n", args.job_file.c_str(),
                   data.status().message().c_str());
      return 2;
    }
    entropy_floor = data.value()->EntropyRateNats();
  }
  if (auto playbook = coordinator::LoadPlaybook(spec->playbook); !playbook.ok()) {
    std::fprintf(stderr, "vigil run: %s\n", playbook.status().message().c_str());
    return 2;
  }
  if (auto faults = coordinator::ParseChaosFaults(
          args.chaos, coordinator::ChaosPlan::Of(spec.value()), args.seed);
      !faults.ok()) {
    std::fprintf(stderr, "vigil run: %s\n", faults.status().message().c_str());
    return 2;
  }
  const std::string workdir =
      fs::absolute(args.workdir.empty() ? "vigil-runs/" + spec->name : args.workdir)
          .lexically_normal()
          .string();
  // Under Slurm: submitted from here, or run in the allocation this is in.
  const std::string launcher = args.launcher.empty() ? spec->launcher : args.launcher;
  std::optional<SlurmAllocation> allocation;
  std::string srun;
  if (launcher == "slurm") {
    auto a = CurrentSlurmAllocation(spec->slurm.command_timeout_ms);
    if (!a.ok()) {
      std::fprintf(stderr, "vigil run: %s\n", a.status().ToString().c_str());
      return 1;
    }
    if (!a.value()) return SubmitToSlurm(args, spec.value(), workdir, entropy_floor);
    allocation = std::move(*a.value());
    if (static_cast<int>(allocation->nodes.size()) < spec->world.hosts) {
      std::fprintf(stderr,
                   "vigil run: Slurm job %s has %zu nodes; the job needs world.hosts = %d\n",
                   allocation->job_id.c_str(), allocation->nodes.size(), spec->world.hosts);
      return 2;
    }
    auto found = FindExecutable("srun");
    if (!found.ok()) {
      std::fprintf(stderr, "vigil run: %s\n", found.status().ToString().c_str());
      return 1;
    }
    srun = found.value();
  }
  // The hosts' names: under Slurm their node names (the first world.hosts
  // nodes; every other node of the allocation is a spare).
  std::vector<std::string> host_names, spare_names;
  for (int h = 0; h < spec->world.hosts; ++h)
    host_names.push_back(allocation ? allocation->nodes[h] : "host-" + std::to_string(h));
  if (allocation) {
    spare_names.assign(allocation->nodes.begin() + spec->world.hosts, allocation->nodes.end());
    if (static_cast<int>(spare_names.size()) < spec->world.spares) {
      std::fprintf(stderr,
                   "vigil run: Slurm job %s has %zu nodes: %zu spare(s), not world.spares = %d\n",
                   allocation->job_id.c_str(), allocation->nodes.size(), spare_names.size(),
                   spec->world.spares);
    }
  } else {
    for (int i = 0; i < spec->world.spares; ++i)
      spare_names.push_back("spare-" + std::to_string(i));
  }
  for (const auto& dir : {workdir, workdir + "/logs"}) {
    if (Status st = MakeDirs(dir); !st.ok()) {
      std::fprintf(stderr, "vigil run: %s\n", st.ToString().c_str());
      return 1;
    }
  }
  const std::string token_file = workdir + "/token";
  if (auto token = WriteTokenFile(token_file); !token.ok()) {
    std::fprintf(stderr, "vigil run: %s\n", token.status().ToString().c_str());
    return 1;
  }
  const std::string addr_file = VigildAddrPath(workdir);
  fs::remove(addr_file);

  InstallInterruptHandler();

  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  SpawnOptions vopts;
  vopts.argv = {SiblingBinary("vigild"),
                "--job",
                fs::absolute(args.job_file).string(),
                "--workdir",
                workdir,
                "--token-file",
                token_file};
  if (allocation) {
    // The agents are on other nodes: vigild listens on every interface and
    // advertises this node's address.
    for (const char* a : {"--listen", "0.0.0.0", "--slurm-job"}) vopts.argv.push_back(a);
    vopts.argv.push_back(allocation->job_id);
  }
  for (const auto& c : args.chaos) {
    vopts.argv.push_back("--chaos");
    vopts.argv.push_back(c);
  }
  vopts.argv.push_back("--chaos-seed");
  vopts.argv.push_back(std::to_string(args.seed));
  vopts.log_file = workdir + "/logs/vigild.log";
  vopts.parent_death_signal = SIGTERM;
  // Starts vigild and waits for it to publish its addresses (pid, rpc, http).
  struct Vigild {
    pid_t pid = -1;
    VigildAddr addr;
  };
  auto start_vigild = [&]() -> std::optional<Vigild> {
    auto pid = SpawnProcess(vopts);
    if (!pid.ok()) {
      std::fprintf(stderr, "vigil run: cannot start vigild: %s\n", pid.status().ToString().c_str());
      return std::nullopt;
    }
    const double since = elapsed();
    while (true) {
      // A vigild that took the run over rewrites the file its predecessor left.
      if (auto addr = ReadVigildAddr(workdir); addr.ok() && addr->pid == pid.value())
        return Vigild{pid.value(), addr.value()};
      int status = 0;
      if (::waitpid(pid.value(), &status, WNOHANG) == pid.value()) {
        std::fprintf(stderr, "vigil run: vigild exited during start-up; see %s\n",
                     vopts.log_file.c_str());
        return std::nullopt;
      }
      if (elapsed() - since > 10) {
        std::fprintf(stderr, "vigil run: vigild did not start within 10 s; see %s\n",
                     vopts.log_file.c_str());
        ::kill(pid.value(), SIGKILL);
        ::waitpid(pid.value(), nullptr, 0);
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  auto vigild = start_vigild();
  if (!vigild) return 1;
  std::string rpc = vigild->addr.rpc, http = vigild->addr.http;
  const int64_t run_id = vigild->addr.run_id;
  const bool json_output = args.output == "json";
  if (!json_output) {
    std::fprintf(
        stderr,
        "vigil: job %s, run %lld, %d hosts x %d ranks; workdir %s; metrics http://%s/metrics\n",
        spec->name.c_str(), static_cast<long long>(run_id), spec->world.hosts,
        spec->world.ranks_per_host, workdir.c_str(), http.c_str());
    if (allocation) {
      std::string hosts, spares;
      for (const auto& h : host_names) hosts += " " + h;
      for (const auto& s : spare_names) spares += " " + s;
      std::fprintf(stderr, "vigil: Slurm job %s: hosts%s; spares%s\n", allocation->job_id.c_str(),
                   hosts.c_str(), spares.empty() ? " none" : spares.c_str());
    }
  }

  std::vector<pid_t> agents;
  auto start_agent = [&](const std::string& host) {
    SpawnOptions a;
    a.argv = {SiblingBinary("vigil-agent"),
              "--coordinator",
              rpc,
              "--coordinator-file",
              addr_file,
              "--token-file",
              token_file,
              "--host",
              host,
              "--slots",
              std::to_string(spec->world.ranks_per_host)};
    if (allocation) {
      a.argv =
          SrunStep(host, "vigil-agent-" + host,
                   spec->slurm.GpusPerNode(spec->world.device, spec->world.ranks_per_host), a.argv);
      a.argv[0] = srun;
    }
    a.log_file = workdir + "/logs/agent-" + host + ".log";
    a.parent_death_signal = SIGTERM;
    auto pid = SpawnProcess(a);
    if (!pid.ok()) {
      std::fprintf(stderr, "vigil run: cannot start agent %s: %s\n", host.c_str(),
                   pid.status().ToString().c_str());
      ::kill(vigild->pid, SIGTERM);
      return false;
    }
    agents.push_back(pid.value());
    return true;
  };
  // The job's hosts first; its spares once the hosts have taken their slots.
  for (const auto& host : host_names) {
    if (!start_agent(host)) break;
  }
  bool spares_started = spare_names.empty();

  ProgressLine progress(!json_output);
  int vigild_status = -1;
  bool forwarded_interrupt = false;
  std::string last_pause_message;
  int vigild_restarts = 0;
  // Following a vigild this command did not start: its own was fenced out
  // by a newer one (started by a person or a standby) that took the run over.
  bool following = false;
  double last_answer = elapsed();  // vigild's last answer to a status request
  int unanswered = 0;              // status requests unanswered since
  std::optional<bool> followed_ok;
  while (true) {
    int status = 0;
    if (following) {
      if (auto a = ReadVigildAddr(workdir); a.ok()) http = a->http;
      auto lb = Logbook::Open(workdir + "/logbook.sqlite", false);
      auto row = lb.ok() ? lb.value()->Run(run_id) : Result<RunRow>(lb.status());
      if (row.ok() && IsRunOver(row->status)) {
        followed_ok = row->status == job_state::kSucceeded;
        vigild_status = 0;
        break;
      }
    } else if (::waitpid(vigild->pid, &status, WNOHANG) == vigild->pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == kVigildExitFenced) {
        std::fprintf(stderr,
                     "\nvigil run: vigild (pid %d) was fenced out: a newer vigild took run %lld "
                     "over; following it\n",
                     vigild->pid, static_cast<long long>(run_id));
        following = true;
        continue;
      }
      // vigild ends the job with an exit status; a signal (or a crash) is
      // its death, not the job's: a new vigild takes the run over, and the
      // agents, whose ranks train on meanwhile, register with it.
      const bool died = WIFSIGNALED(status) && !forwarded_interrupt;
      if (died) {
        // Killed by a vigild that took the run over (it was stopped, holding
        // the logbook): that one goes on; start no rival to it.
        auto a = ReadVigildAddr(workdir);
        const int other = a.ok() ? a->pid : 0;
        if (other > 0 && other != vigild->pid && ::kill(other, 0) == 0) {
          std::fprintf(stderr,
                       "\nvigil run: vigild (pid %d) was killed; vigild pid %d has run %lld: "
                       "following it\n",
                       vigild->pid, other, static_cast<long long>(run_id));
          following = true;
          continue;
        }
      }
      if (!died || vigild_restarts >= spec->limits.coordinator_restarts) {
        if (died) {
          std::fprintf(stderr,
                       "\nvigil run: vigild died (signal %d) and was started again %d times "
                       "(limits.coordinator_restarts): giving up\n",
                       WTERMSIG(status), vigild_restarts);
        }
        vigild_status = status;
        break;
      }
      ++vigild_restarts;
      std::fprintf(
          stderr, "\nvigil run: vigild (pid %d) died (signal %d); starting it again (%d of %d)\n",
          vigild->pid, WTERMSIG(status), vigild_restarts, spec->limits.coordinator_restarts);
      vigild = start_vigild();
      if (!vigild) {
        vigild_status = status;
        break;
      }
      rpc = vigild->addr.rpc;
      http = vigild->addr.http;
      last_answer = elapsed();
      unanswered = 0;
      continue;
    }
    if (Interrupted() && !forwarded_interrupt) {
      std::fprintf(stderr, "\nvigil run: interrupted; stopping the job\n");
      if (following) {
        if (auto a = ReadVigildAddr(workdir); a.ok() && a->pid > 0) ::kill(a->pid, SIGTERM);
      } else {
        ::kill(vigild->pid, SIGTERM);
      }
      forwarded_interrupt = true;
    }
    auto resp = ApiGet(workdir, http, "/api/v1/status", std::chrono::milliseconds(1000));
    if (resp.ok()) {
      last_answer = elapsed();
      unanswered = 0;
    } else {
      ++unanswered;
    }
    // A vigild that stopped answering (SIGSTOPped, wedged) is killed: the
    // vigild started in its place takes the run over.
    const int watchdog_ms = spec->limits.CoordinatorWatchdogMs();
    // Three polls in a row unanswered, and the limit past: one slow answer is not a wedge.
    if (!following && watchdog_ms > 0 && unanswered >= 3 &&
        elapsed() - last_answer > watchdog_ms / 1000.0) {
      std::fprintf(stderr, "\nvigil run: vigild (pid %d) has not answered for %d ms: killing it\n",
                   vigild->pid, watchdog_ms);
      ::kill(vigild->pid, SIGKILL);
      last_answer = elapsed();
    }
    if (resp.ok() && resp->status == 200) {
      json s = json::parse(resp->body, nullptr, false);
      if (!s.is_discarded()) progress.Show(s, elapsed());
      if (!spares_started && s.is_object() &&
          s.value("state", job_state::kPending) != job_state::kPending) {
        spares_started = true;
        for (const auto& spare : spare_names) {
          if (!start_agent(spare)) break;
        }
      }
      // A paused job waits for a person: say so once, with how to continue.
      const std::string message = s.is_object() ? s.value("message", "") : "";
      if (s.is_object() && s.value("state", "") == job_state::kPaused &&
          message != last_pause_message) {
        std::fprintf(stderr, "\nvigil run: %s\n", message.c_str());
        last_pause_message = message;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  progress.Done();
  // A vigild that died for good gave no shutdown order: the agents, whose
  // ranks would train on for limits.coordinator_grace_ms, are told to stop.
  if (vigild_status == -1 || WIFSIGNALED(vigild_status)) {
    for (pid_t a : agents) ::kill(a, SIGTERM);
  }
  // Agents exit on vigild's shutdown order, or when told to; make sure.
  for (pid_t a : agents) {
    if (WaitFor(a, std::chrono::seconds(10)) == -1) {
      std::fprintf(stderr, "vigil run: agent pid %d did not exit; killing it\n", a);
      ::kill(a, SIGKILL);
      WaitFor(a, std::chrono::seconds(2));
    }
  }
  const double wall = elapsed();
  const std::string summary = PrintRunReport(workdir, run_id, wall, entropy_floor, json_output);
  if (json_output) std::cout << summary << std::endl;
  const bool ok =
      followed_ok ? *followed_ok : WIFEXITED(vigild_status) && WEXITSTATUS(vigild_status) == 0;
  return ok ? 0 : 1;
}

}  // namespace vigil::cli
