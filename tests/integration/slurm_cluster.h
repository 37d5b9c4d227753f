// A real Slurm cluster for tests, from Debian's slurm-wlm and munge: the
// nodes are NetnsCluster hosts (each its own network namespace and
// address), `munged` and `slurmctld` run in the root namespace on the
// bridge's address, and each node has its own `slurmd -N n<i>` in its
// namespace. The configuration is generated in a temporary directory; the
// daemons are stopped by their pid files when the cluster goes.
//
// The constructor sets SLURM_CONF in this process's environment, so that
// sbatch, srun, scontrol and sinfo (and every program a test starts, such as
// `vigil run`) talk to this cluster. Ports are chosen from the test's pid:
// two suites at once do not collide. slurmctld declares a node DOWN after
// `SlurmdTimeout` (kept short here); tasks a job step starts run in their
// node's namespace, with its address.
//
// Needs root, iproute2 and slurm-wlm; Unavailable() says why not.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/status.h"
#include "tests/integration/netns_cluster.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil::testing {

class SlurmCluster {
 public:
  static constexpr int kSlurmdTimeoutS = 5;

  static std::string Unavailable() {
    if (std::string why = NetnsCluster::Unavailable(); !why.empty()) return why;
    if (Sh("command -v slurmctld && command -v slurmd && command -v munged && "
           "command -v mungekey && command -v sbatch")
            .code != 0)
      return "slurm-wlm or munge is not installed (scripts/install-deps.sh installs them)";
    return "";
  }

  explicit SlurmCluster(int nodes) : net_(nodes) {
    if (!net_.error().empty()) {
      error_ = net_.error();
      return;
    }
    error_ = Start();
  }
  ~SlurmCluster() { Stop(); }
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  // "" once every node is idle; else what failed, with the daemons' logs.
  const std::string& error() const { return error_; }
  const NetnsCluster& net() const { return net_; }
  int size() const { return net_.size(); }
  std::string Node(int i) const { return "n" + std::to_string(i); }
  const std::string& conf() const { return conf_; }
  std::string dir() const { return dir_.path(); }

  // `cmd` by /bin/sh, talking to this cluster (SLURM_CONF is set).
  static NetnsCluster::ShResult Sh(const std::string& cmd) { return NetnsCluster::Sh(cmd); }

  // The node dies at once: its slurmd and every task on it SIGKILLed.
  void KillNode(int i) const { net_.KillProcesses(i); }

  // A node brought back: its slurmd started again, the node resumed (a
  // drain cleared), idle within `timeout`.
  Status RestartNode(int i, std::chrono::seconds timeout = std::chrono::seconds(30)) const {
    if (auto r = Sh(SlurmdCommand(i) + " 2>&1"); r.code != 0)
      return Status::IoError("slurmd " + Node(i) + ": " + r.out);
    Sh("scontrol update NodeName=" + Node(i) + " State=RESUME 2>&1");
    return WaitIdle(timeout);
  }

  // Every node idle (no job, no drain), within `timeout`.
  Status WaitIdle(std::chrono::seconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string states;
    while (std::chrono::steady_clock::now() < deadline) {
      states = Sh("sinfo -h -N -o '%N %T' 2>&1").out;
      int idle = 0;
      for (size_t at = states.find(" idle\n"); at != std::string::npos;
           at = states.find(" idle\n", at + 1))
        ++idle;
      if (idle == size()) return Status::Ok();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return Status::Timeout("the nodes are not all idle: " + states);
  }

 private:
  std::string SlurmdCommand(int i) const {
    return "/usr/bin/nsenter --net=/run/netns/" + net_.Name(i) + " slurmd -f " + conf_ + " -N " +
           Node(i);
  }

  std::string Start() {
    const std::string d = dir_.path();
    std::filesystem::create_directories(d + "/state");
    std::filesystem::create_directories(d + "/log");
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    const int port = 6000 + static_cast<int>(::getpid() % 1800) * 2;
    conf_ = d + "/slurm.conf";
    std::ofstream c(conf_);
    c << "ClusterName=vigiltest\n"
      << "SlurmctldHost=" << host << "(" << net_.BridgeAddress() << ")\n"
      << "SlurmUser=root\nAuthType=auth/munge\nCredType=cred/munge\n"
      << "AuthInfo=socket=" << d << "/munge.sock\n"
      << "SlurmctldPort=" << port << "\nSlurmdPort=" << port + 1 << "\n"
      << "StateSaveLocation=" << d << "/state\n"
      << "SlurmdSpoolDir=" << d << "/spool-%n\n"
      << "SlurmctldPidFile=" << d << "/slurmctld.pid\n"
      << "SlurmdPidFile=" << d << "/slurmd-%n.pid\n"
      << "SlurmctldLogFile=" << d << "/log/slurmctld.log\n"
      << "SlurmdLogFile=" << d << "/log/slurmd-%n.log\n"
      << "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
      << "SelectType=select/cons_tres\nSchedulerType=sched/backfill\n"
      << "ReturnToService=2\nSlurmdTimeout=" << kSlurmdTimeoutS << "\n"
      << "MessageTimeout=5\nKillWait=5\nInactiveLimit=0\nMpiDefault=none\n";
    const int cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
    std::string nodes;
    for (int i = 0; i < size(); ++i) {
      c << "NodeName=" << Node(i) << " NodeAddr=" << net_.Address(i) << " CPUs=" << cpus
        << " RealMemory=1000\n";
      nodes += (i ? "," : "") + Node(i);
    }
    c << "PartitionName=main Nodes=" << nodes << " Default=YES MaxTime=INFINITE State=UP\n";
    c.close();
    ::setenv("SLURM_CONF", conf_.c_str(), 1);
    const std::string steps[] = {
        "mungekey --create --force --keyfile=" + d + "/munge.key",
        "munged --socket=" + d + "/munge.sock --key-file=" + d + "/munge.key --pid-file=" + d +
            "/munged.pid --log-file=" + d + "/log/munged.log --seed-file=" + d +
            "/munge.seed --force",
        "slurmctld -f " + conf_,
    };
    for (const auto& step : steps) {
      if (auto r = Sh(step + " 2>&1"); r.code != 0) return "`" + step + "` failed: " + r.out;
    }
    for (int i = 0; i < size(); ++i) {
      if (auto r = Sh(SlurmdCommand(i) + " 2>&1"); r.code != 0)
        return "slurmd " + Node(i) + " failed: " + r.out;
    }
    if (Status st = WaitIdle(std::chrono::seconds(30)); !st.ok())
      return st.message() + "\n" + Slurp(d + "/log/slurmctld.log");
    return "";
  }

  // SIGTERM by pid file, SIGKILL after a few seconds.
  static void StopByPidFile(const std::string& file) {
    std::ifstream in(file);
    pid_t pid = 0;
    if (!(in >> pid) || pid <= 1) return;
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ::kill(pid, SIGKILL);
  }

  void Stop() {
    if (conf_.empty()) return;
    for (int i = 0; i < size(); ++i) StopByPidFile(dir_.path() + "/slurmd-" + Node(i) + ".pid");
    StopByPidFile(dir_.path() + "/slurmctld.pid");
    StopByPidFile(dir_.path() + "/munged.pid");
  }

  NetnsCluster net_;  // torn down last: what is left in the namespaces is killed
  TempDir dir_;
  std::string conf_, error_;
};

}  // namespace vigil::testing
