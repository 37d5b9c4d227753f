// Hosts for tests, each its own network namespace: N namespaces, each
// joined by a veth pair to one bridge in the root namespace, so that what
// crosses between them crosses real interfaces, with real addresses, and a
// host's link can be cut (`ip link set DEV down`) and brought back.
//
// Host i is namespace <tag>h<i> at 10.<net>.<sub>.(10+i)/24; the bridge is
// .1, so the test itself (in the root namespace) reaches every host.
// Programs run in a host with `nsenter --net` (not `ip netns exec`, which
// remounts /sys: slurmd then finds no cgroup filesystem). Everything is
// removed when the cluster goes: the processes left in its namespaces are
// SIGKILLed, then the namespaces, veths and bridge deleted.
//
// Needs root and iproute2; Unavailable() says why not, for GTEST_SKIP.
// This kernel has no netem qdisc: a link can be cut, not slowed or made lossy.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::testing {

class NetnsCluster {
 public:
  struct ShResult {
    int code;
    std::string out;
  };
  // `cmd` run by /bin/sh: its exit code and standard output.
  static ShResult Sh(const std::string& cmd) {
    ShResult r{-1, ""};
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 512> buf{};
    while (size_t n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
    const int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
  }

  // "" when this machine can make a cluster; else why not.
  static std::string Unavailable() {
    if (::geteuid() != 0) return "network namespaces need root";
    if (Sh("command -v ip >/dev/null && command -v nsenter >/dev/null").code != 0)
      return "iproute2 (ip) or util-linux (nsenter) is not installed";
    return "";
  }

  explicit NetnsCluster(int hosts) : hosts_(hosts) {
    const int id = static_cast<int>(::getpid());
    tag_ = "vg" + std::to_string(id % 100000);
    // A /24 of 10.210.0.0/16 - 10.229.0.0/16 per test process: two suites at once do not collide.
    prefix_ = "10." + std::to_string(210 + (id / 250) % 20) + "." + std::to_string(id % 250) + ".";
    Teardown();  // what a killed run with the same pid left
    std::vector<std::string> steps = {"ip link add " + Bridge() + " type bridge",
                                      "ip addr add " + prefix_ + "1/24 dev " + Bridge(),
                                      "ip link set " + Bridge() + " up"};
    for (int i = 0; i < hosts_; ++i) {
      const std::string ns = Name(i), veth = Veth(i), peer = tag_ + "p" + std::to_string(i);
      steps.push_back("ip netns add " + ns);
      steps.push_back("ip link add " + veth + " type veth peer name " + peer);
      steps.push_back("ip link set " + peer + " netns " + ns);
      steps.push_back("ip -n " + ns + " link set " + peer + " name eth0");
      steps.push_back("ip -n " + ns + " addr add " + Address(i) + "/24 dev eth0");
      steps.push_back("ip -n " + ns + " link set eth0 up");
      steps.push_back("ip -n " + ns + " link set lo up");
      steps.push_back("ip link set " + veth + " master " + Bridge());
      steps.push_back("ip link set " + veth + " up");
    }
    for (const auto& step : steps) {
      const auto r = Sh(step + " 2>&1");
      if (r.code != 0) {
        error_ = "`" + step + "` failed: " + r.out;
        return;
      }
    }
  }
  ~NetnsCluster() { Teardown(); }
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  // "" once the cluster is up; else the step that failed.
  const std::string& error() const { return error_; }
  int size() const { return hosts_; }
  std::string Name(int i) const { return tag_ + "h" + std::to_string(i); }
  std::string Address(int i) const { return prefix_ + std::to_string(10 + i); }
  std::string BridgeAddress() const { return prefix_ + "1"; }
  // The root-namespace end of host i's link.
  std::string Veth(int i) const { return tag_ + "v" + std::to_string(i); }

  // `argv` run in host i's network namespace (nsenter execs it: same pid).
  std::vector<std::string> In(int i, std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {"/usr/bin/nsenter", "--net=/run/netns/" + Name(i)});
    return argv;
  }

  // Every process in host i's namespace SIGKILLed: the host dies at once.
  void KillProcesses(int i) const {
    Sh("ip netns pids " + Name(i) + " 2>/dev/null | xargs -r kill -9");
  }

  // Cuts host i off (its link down), or brings it back.
  Status SetLink(int i, bool up) const {
    const std::string cmd = "ip link set " + Veth(i) + (up ? " up" : " down") + " 2>&1";
    const auto r = Sh(cmd);
    return r.code == 0 ? Status::Ok() : Status::IoError(cmd + ": " + r.out);
  }

 private:
  std::string Bridge() const { return tag_ + "br"; }

  void Teardown() {
    for (int i = 0; i < hosts_; ++i) {
      KillProcesses(i);
      Sh("ip netns del " + Name(i) + " 2>/dev/null");
      Sh("ip link del " + Veth(i) + " 2>/dev/null");
    }
    Sh("ip link del " + Bridge() + " 2>/dev/null");
  }

  int hosts_;
  std::string tag_, prefix_, error_;
};

}  // namespace vigil::testing
