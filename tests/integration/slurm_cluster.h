// A real Slurm cluster for tests, from Debian's slurm-wlm and munge: the
// nodes are NetnsCluster hosts (each its own network namespace and
// address), `munged` and `slurmctld` run in the root namespace on the
// bridge's address, and each node has its own `slurmd -N n<i>` in its
// namespace. The configuration is generated in a temporary directory. The
// daemons run in the foreground as this process's children (killed with it,
// should it die), stopped and reaped when the cluster goes.
//
// The constructor sets SLURM_CONF in this process's environment, so that
// sbatch, srun, scontrol and sinfo (and every program a test starts, such as
// `vigil run`) talk to this cluster. Ports are chosen from the test's pid:
// two suites at once do not collide. slurmctld declares a node DOWN after
// `SlurmdTimeout` (kept short here); tasks a job step starts run in their
// node's namespace, with its address.
//
// Needs root, iproute2 and slurm-wlm, and cgroup v1: several slurmd on one
// machine are verified there; on cgroup v2, Debian's slurmd (built without
// multiple-slurmd support) would have them share one slurmstepd scope.
// Unavailable() says why not.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "common/process.h"
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
    if (Sh("stat -fc %T /sys/fs/cgroup").out == "cgroup2fs\n")
      return "several slurmd on one machine are verified on cgroup v1 only; this one has v2";
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
  void KillNode(int i) {
    net_.KillProcesses(i);
    Reap(Node(i));
  }

  // A node brought back: its slurmd started again, the node resumed (a
  // drain cleared), idle within `timeout`.
  Status RestartNode(int i, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    if (std::string e = StartSlurmd(i); !e.empty()) return Status::IoError(e);
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
    std::string logs;
    for (const auto& entry : std::filesystem::directory_iterator(dir_.path() + "/log"))
      logs += "--- " + entry.path().filename().string() + ":\n" + Slurp(entry.path());
    return Status::Timeout("the nodes are not all idle: " + states + logs);
  }

 private:
  // `argv` started in the foreground as a child; "" or why it could not.
  std::string Daemon(const std::string& name, std::vector<std::string> argv) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.log_file = dir_.path() + "/log/" + name + ".out";
    o.parent_death_signal = SIGKILL;
    auto pid = SpawnProcess(o);
    if (!pid.ok()) return name + ": " + pid.status().ToString();
    daemons_[name] = pid.value();
    return "";
  }
  std::string StartSlurmd(int i) {
    return Daemon(Node(i), net_.In(i, {"/usr/sbin/slurmd", "-D", "-f", conf_, "-N", Node(i)}));
  }
  // Waits for the daemon `name` (SIGKILLed after 5 s).
  void Reap(const std::string& name) {
    auto it = daemons_.find(name);
    if (it == daemons_.end()) return;
    for (int i = 0; i < 100 && ::waitpid(it->second, nullptr, WNOHANG) == 0; ++i) {
      if (i == 99) {
        ::kill(it->second, SIGKILL);
        ::waitpid(it->second, nullptr, 0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    daemons_.erase(it);
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
    std::string nodes;
    for (int i = 0; i < size(); ++i) {
      c << "NodeName=" << Node(i) << " NodeAddr=" << net_.Address(i) << " CPUs=1 RealMemory=1000\n";
      nodes += (i ? "," : "") + Node(i);
    }
    c << "PartitionName=main Nodes=" << nodes << " Default=YES MaxTime=INFINITE State=UP\n";
    c.close();
    ::setenv("SLURM_CONF", conf_.c_str(), 1);
    if (auto r = Sh("mungekey --create --force --keyfile=" + d + "/munge.key 2>&1"); r.code != 0)
      return "mungekey: " + r.out;
    if (std::string e = Daemon(
            "munged", {"/usr/sbin/munged", "-F", "--force", "--socket=" + d + "/munge.sock",
                       "--key-file=" + d + "/munge.key", "--pid-file=" + d + "/munged.pid",
                       "--log-file=" + d + "/log/munged.log", "--seed-file=" + d + "/munge.seed"});
        !e.empty())
      return e;
    for (int i = 0; i < 100 && !std::filesystem::exists(d + "/munge.sock"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (std::string e = Daemon("slurmctld", {"/usr/sbin/slurmctld", "-D", "-f", conf_}); !e.empty())
      return e;
    for (int i = 0; i < size(); ++i) {
      if (std::string e = StartSlurmd(i); !e.empty()) return e;
    }
    if (Status st = WaitIdle(std::chrono::seconds(30)); !st.ok()) return st.message();
    return "";
  }

  // The nodes' slurmd first, then slurmctld, then munged: SIGTERM, reaped.
  void Stop() {
    std::vector<std::string> order;
    for (int i = 0; i < size(); ++i) order.push_back(Node(i));
    order.insert(order.end(), {"slurmctld", "munged"});
    for (const auto& name : order) {
      if (auto it = daemons_.find(name); it != daemons_.end()) ::kill(it->second, SIGTERM);
      Reap(name);
    }
  }

  TempDir dir_;       // removed last, once nothing runs in it
  NetnsCluster net_;  // what is left in the namespaces is killed with them
  std::string conf_, error_;
  std::map<std::string, pid_t> daemons_;
};

}  // namespace vigil::testing
