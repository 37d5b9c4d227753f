// vigild under many agents: one real vigild, one real agent training the
// tiny model on one rank, and N played agents (default 1,000 then 10,000),
// each its own authenticated connection from a few processes, registering
// at once and heartbeating at 1 Hz as spares. For each N it reports, beside
// the same vigild before the played agents came (the idle baseline):
//   - vigild's CPU (share of one core) and resident memory;
//   - the round trip of a store request through vigild's loop while the
//     heartbeats arrive (p50, p99): how long a message waits to be handled;
//   - the real job's step rate;
//   - the time for all N to register;
//   - the time from the last heartbeat of one played agent that goes silent
//     (its connection left open) to its host_lost event in the logbook;
//   - the handshake's cost per connection against a plain TCP connect.
//
// Usage: coordinator_load [--agents 1000,10000] [--processes 4] [--seconds 10]
//                         [--bin-dir DIR]   (default: this binary's folder)
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <queue>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "common/framed_socket.h"
#include "common/framing.h"
#include "common/http_client.h"
#include "common/process.h"
#include "common/util.h"
#include "common/vigild_addr.h"
#include "logbook/logbook.h"

namespace vigil::bench {
namespace {

using std::chrono::milliseconds;
using Micros = int64_t;

constexpr int kHeartbeatTimeoutMs = 3000;

Micros WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// CPU seconds (user + system) a process has used, from /proc.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) {
      stime = std::stod(f);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double RssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

wire::Hello MakeHello(wire::Hello::Role role, const std::string& host) {
  wire::Hello h;
  h.set_protocol_version(kProtocolVersion);
  h.set_role(role);
  h.set_host(host);
  h.set_slots(1);
  h.set_pid(static_cast<uint32_t>(::getpid()));
  return h;
}

// One process's played agents: registers `count` of them (heartbeating
// those registered meanwhile), says "R" on `out`, then heartbeats each at
// 1 Hz and reads what vigild sends, until told "Q" on `in`. "S" silences its
// first agent (the connection stays open) and answers with the wall time of
// its last heartbeat, in microseconds.
[[noreturn]] void PlayAgents(const std::string& rpc, const std::string& token, int first, int count,
                             int in, int out) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ctl{EPOLLIN, {.u64 = ~uint64_t{0}}};
  ::epoll_ctl(ep, EPOLL_CTL_ADD, in, &ctl);
  wire::Envelope beat;
  beat.mutable_heartbeat();
  const std::string frame = EncodeFrame(beat);
  std::vector<int> fds;
  // (due, agent): each agent's next heartbeat, one second after the last.
  using Due = std::pair<Clock::time_point, size_t>;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due;
  bool silent = false;
  Micros last_beat_of_first = 0;
  std::vector<epoll_event> events(256);
  char buf[65536];
  auto beat_due = [&] {
    const auto now = Clock::now();
    while (!due.empty() && due.top().first <= now) {
      const size_t i = due.top().second;
      due.pop();
      if (!(silent && i == 0)) {
        (void)::send(fds[i], frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (i == 0) last_beat_of_first = WallMicros();
      }
      due.push({now + std::chrono::seconds(1), i});
    }
  };
  auto read_ready = [&](int timeout_ms) {
    const int ready = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), timeout_ms);
    for (int e = 0; e < ready; ++e) {
      if (events[e].data.u64 == ~uint64_t{0}) {
        char c = 0;
        if (::read(in, &c, 1) != 1 || c == 'Q') std::_Exit(0);
        if (c == 'S') {
          silent = true;
          const std::string at = std::to_string(last_beat_of_first) + "\n";
          if (::write(out, at.data(), at.size()) < 0) std::_Exit(1);
        }
        continue;
      }
      const int fd = fds[events[e].data.u64];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
      }
      if (n == 0) ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);  // vigild closed it
    }
  };
  for (int i = first; i < first + count; ++i) {
    char host[32];
    std::snprintf(host, sizeof(host), "load-%05d", i);
    auto sock = FramedSocket::ConnectAndHello(rpc, MakeHello(wire::Hello::AGENT, host), token,
                                              milliseconds(60000));
    if (!sock.ok()) {
      std::fprintf(stderr, "agent %s: %s\n", host, sock.status().ToString().c_str());
      std::_Exit(1);
    }
    wire::Envelope ready;
    ready.mutable_host_ready()->set_ok(true);
    if (!sock->Send(ready).ok()) std::_Exit(1);
    const int fd = sock->ReleaseFd();
    ::fcntl(fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{EPOLLIN, {.u64 = fds.size()}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    due.push({Clock::now() + std::chrono::seconds(1), fds.size()});
    fds.push_back(fd);
    beat_due();
    read_ready(0);
  }
  if (::write(out, "R", 1) != 1) std::_Exit(1);
  while (true) {
    beat_due();
    const auto wait = std::chrono::duration_cast<milliseconds>(due.top().first - Clock::now());
    read_ready(static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 50)));
  }
}

struct Window {
  double cpu_share = 0, rss_mib = 0, probe_p50_ms = 0, probe_p99_ms = 0, steps_per_s = 0;
};

class Bench {
 public:
  Bench(std::string bin, int agents, int processes, int seconds)
      : bin_(std::move(bin)), agents_(agents), processes_(processes), seconds_(seconds) {}

  int Run() {
    char tmpl[] = "/tmp/vigil-load-XXXXXX";
    if (!::mkdtemp(tmpl)) return 1;
    dir_ = tmpl;
    // In the work directory, where the CLI (and ApiGet) look for it.
    std::filesystem::create_directories(dir_ + "/work");
    const std::string token_file = dir_ + "/work/token";
    token_ = WriteTokenFile(token_file).value();
    std::ofstream(dir_ + "/job.yaml")
        << "name: load\nmodel: {kind: decoder, vocab: 256, d_model: 64, layers: 2, heads: 4, "
           "seq_len: 32}\ndata: {kind: synthetic, seed: 1}\nschedule: {steps: 100000000, "
           "batch_per_rank: 8}\nworld: {hosts: 1, ranks_per_host: 1, device: cpu, spares: "
        << agents_
        << "}\ncheckpoint: {every_steps: 100000000}\nlimits: {heartbeat_interval_ms: 1000, "
           "heartbeat_timeout_ms: "
        << kHeartbeatTimeoutMs << ", agent_wait_ms: 600000}\n";
    vigild_ = Spawn({bin_ + "/vigild", "--job", dir_ + "/job.yaml", "--workdir", dir_ + "/work",
                     "--token-file", token_file, "--new-run"},
                    dir_ + "/vigild.log");
    for (int i = 0; i < 300 && !addr_.ok(); ++i) {
      std::this_thread::sleep_for(milliseconds(100));
      addr_ = ReadVigildAddr(dir_ + "/work");
    }
    if (!addr_.ok()) return Fail("vigild did not start");
    agent_ = Spawn({bin_ + "/vigil-agent", "--coordinator", addr_->rpc, "--token-file", token_file,
                    "--host", "real-0", "--kernel-log", ""},
                   dir_ + "/agent.log");
    if (!WaitForStep(1, 60)) return Fail("the real job did not start training");
    const Window idle = Measure();
    const auto [handshake_us, plain_us] = HandshakeCost(300);

    const auto t_register = Clock::now();
    StartPlayers();
    for (auto& p : players_) {
      char c = 0;
      if (::read(p.out, &c, 1) != 1 || c != 'R') return Fail("a player failed to register");
    }
    const double register_s = Since(t_register);
    std::this_thread::sleep_for(milliseconds(2000));  // the first heartbeat round
    const Window loaded = Measure();
    const double detect_ms = SilentAgentDetection();

    std::printf("%-7d %-22s %7.1f%% %9.1f %10.3f %10.3f %9.1f\n", agents_, "vigild idle (1 host)",
                idle.cpu_share * 100, idle.rss_mib, idle.probe_p50_ms, idle.probe_p99_ms,
                idle.steps_per_s);
    std::printf("%-7d %-22s %7.1f%% %9.1f %10.3f %10.3f %9.1f\n", agents_,
                ("+" + std::to_string(agents_) + " agents @1Hz").c_str(), loaded.cpu_share * 100,
                loaded.rss_mib, loaded.probe_p50_ms, loaded.probe_p99_ms, loaded.steps_per_s);
    std::printf(
        "        registration of %d agents from %d processes: %.2f s (%.0f per second)\n"
        "        silent agent -> host_lost: %.0f ms after its last heartbeat (heartbeat "
        "timeout %d ms; target < %d)\n"
        "        handshake %.0f us per connection vs plain TCP connect %.0f us\n",
        agents_, processes_, register_s, agents_ / register_s, detect_ms, kHeartbeatTimeoutMs,
        kHeartbeatTimeoutMs + 500, handshake_us, plain_us);
    Stop();
    return 0;
  }

  ~Bench() { Stop(); }

 private:
  struct Player {
    pid_t pid;
    int in, out;  // what the parent writes to it, what it writes back
  };

  pid_t Spawn(std::vector<std::string> argv, const std::string& log) {
    SpawnOptions o;
    o.argv = std::move(argv);
    o.log_file = log;
    o.parent_death_signal = SIGKILL;
    auto pid = SpawnProcess(o);
    return pid.ok() ? pid.value() : -1;
  }

  int Fail(const std::string& why) {
    std::fprintf(stderr, "coordinator_load: %s (logs in %s)\n", why.c_str(), dir_.c_str());
    keep_dir_ = true;
    Stop();
    return 1;
  }

  // The real job's step, from vigild's API (-1: unread).
  int64_t Step() {
    auto r = ApiGet(dir_ + "/work", addr_->http, "/api/v1/status", milliseconds(5000));
    if (!r.ok() || r->status != 200) return -1;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    return j.is_object() ? j.value("step", int64_t{-1}) : -1;
  }
  bool WaitForStep(int64_t step, int seconds) {
    for (int i = 0; i < seconds * 10; ++i) {
      if (Step() >= step) return true;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return false;
  }

  // vigild's CPU, memory and loop latency, and the job's step rate, over
  // `seconds_`. The probe is a store client: one ADD every 20 ms.
  Window Measure() {
    Window w;
    auto probe = FramedSocket::ConnectAndHello(
        addr_->rpc, MakeHello(wire::Hello::STORE_CLIENT, "probe"), token_, milliseconds(10000));
    if (!probe.ok()) return w;
    const int64_t step0 = Step();
    const double cpu0 = CpuSeconds(vigild_);
    const auto t0 = Clock::now();
    std::vector<double> rtt_ms;
    uint64_t id = 0;
    while (Since(t0) < seconds_) {
      wire::Envelope req;
      req.mutable_store_request()->set_id(++id);
      req.mutable_store_request()->set_op(wire::StoreRequest::ADD);
      req.mutable_store_request()->add_keys("probe");
      req.mutable_store_request()->set_delta(1);
      const auto sent = Clock::now();
      if (!probe->Send(req).ok()) break;
      auto resp = probe->Receive(milliseconds(5000));
      if (!resp.ok()) break;
      rtt_ms.push_back(Since(sent) * 1e3);
      std::this_thread::sleep_for(milliseconds(20));
    }
    const double elapsed = Since(t0);
    w.cpu_share = (CpuSeconds(vigild_) - cpu0) / elapsed;
    w.rss_mib = RssMiB(vigild_);
    w.probe_p50_ms = Percentile(rtt_ms, 0.50);
    w.probe_p99_ms = Percentile(rtt_ms, 0.99);
    const int64_t step1 = Step();
    w.steps_per_s = step0 >= 0 && step1 >= 0 ? static_cast<double>(step1 - step0) / elapsed : -1;
    return w;
  }

  // Microseconds per connection: the whole handshake (as the CLI makes it),
  // and a plain TCP connect and close to the same port.
  std::pair<double, double> HandshakeCost(int n) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      auto s = FramedSocket::ConnectAndHello(addr_->rpc, MakeHello(wire::Hello::CONTROL, "bench"),
                                             token_, milliseconds(5000));
      if (!s.ok()) std::fprintf(stderr, "handshake: %s\n", s.status().ToString().c_str());
    }
    const double handshake = Since(t0) * 1e6 / n;
    const auto t1 = Clock::now();
    for (int i = 0; i < n; ++i) (void)FramedSocket::Connect(addr_->rpc, milliseconds(5000));
    const double plain = Since(t1) * 1e6 / n;
    return {handshake, plain};
  }

  void StartPlayers() {
    const int per = (agents_ + processes_ - 1) / processes_;
    for (int p = 0, first = 0; p < processes_ && first < agents_; ++p, first += per) {
      int to_child[2], from_child[2];
      if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) std::abort();
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        PlayAgents(addr_->rpc, token_, first, std::min(per, agents_ - first), to_child[0],
                   from_child[1]);
      }
      ::close(to_child[0]);
      ::close(from_child[1]);
      players_.push_back({pid, to_child[1], from_child[0]});
    }
  }

  // Silences the first played agent and waits for its host_lost event.
  double SilentAgentDetection() {
    if (::write(players_[0].in, "S", 1) != 1) return -1;
    std::string line;
    char c = 0;
    while (::read(players_[0].out, &c, 1) == 1 && c != '\n') line += c;
    if (line.empty()) return -1;
    const Micros last_beat = std::stoll(line);
    for (int i = 0; i < 200; ++i) {
      std::this_thread::sleep_for(milliseconds(50));
      auto lb = Logbook::Open(dir_ + "/work/logbook.sqlite", false);
      if (!lb.ok()) continue;
      auto runs = lb.value()->Runs();
      if (!runs.ok() || runs->empty()) continue;
      auto events = lb.value()->Events(runs->back().id);
      if (!events.ok()) continue;
      for (const auto& e : events.value())
        if (e.kind == "host_lost" && e.host == "load-00000")
          return static_cast<double>(e.time_us - last_beat) / 1e3;
    }
    return -1;
  }

  void Stop() {
    for (auto& p : players_) {
      if (::write(p.in, "Q", 1) < 0) ::kill(p.pid, SIGKILL);
      ::waitpid(p.pid, nullptr, 0);
      ::close(p.in);
      ::close(p.out);
    }
    players_.clear();
    for (pid_t* pid : {&agent_, &vigild_}) {
      if (*pid <= 0) continue;
      ::kill(*pid, SIGTERM);
      ::waitpid(*pid, nullptr, 0);
      *pid = -1;
    }
    if (!dir_.empty() && !keep_dir_) std::filesystem::remove_all(dir_);
    dir_.clear();
  }

  std::string bin_, dir_, token_;
  int agents_, processes_, seconds_;
  Result<VigildAddr> addr_ = Status::NotFound("not yet");
  pid_t vigild_ = -1, agent_ = -1;
  std::vector<Player> players_;
  bool keep_dir_ = false;
};

}  // namespace
}  // namespace vigil::bench

int main(int argc, char** argv) {
  using namespace vigil::bench;
  ::signal(SIGPIPE, SIG_IGN);
  (void)vigil::RaiseOpenFileLimit();
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  const std::string bin = Arg(argc, argv, "--bin-dir", self.c_str());
  const int processes = std::atoi(Arg(argc, argv, "--processes", "4"));
  const int seconds = std::atoi(Arg(argc, argv, "--seconds", "10"));
  std::vector<int> counts;
  std::stringstream list(Arg(argc, argv, "--agents", "1000,10000"));
  for (std::string n; std::getline(list, n, ',');) counts.push_back(std::stoi(n));
  std::printf("%-7s %-22s %8s %9s %10s %10s %9s\n", "agents", "phase", "vigild", "RSS MiB",
              "probe p50", "probe p99", "steps/s");
  std::printf("%-7s %-22s %8s %9s %10s %10s %9s\n", "", "", "CPU", "", "ms", "ms", "(job)");
  for (int n : counts) {
    Bench b(bin, n, processes, seconds);
    if (b.Run() != 0) return 1;
  }
  return 0;
}
