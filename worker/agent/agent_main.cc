// vigil-agent: one per host. Registers with vigild, runs the ranks it is
// ordered to run, relays their reports, reports their exits, tears
// generations down on order (SIGTERM, grace, SIGKILL) and sends heartbeats.
// Asked to diagnose a generation that stopped making progress, it answers
// with each rank's process state at once, then dumps every rank's stacks
// (stack_dump.h) before it lets that generation be torn down.
// If vigild goes away its ranks train on: it keeps their reports and exits
// and reconnects to the vigild that restarts, which adopts them
// (coordinator_link.h); only past limits.coordinator_grace_ms does it kill
// every rank it runs and exit. It obeys no order of a coordinator epoch
// older than the newest it has seen (epoch_fence.h).
#include <signal.h>
#include <unistd.h>

#include <utility>

#include <boost/asio.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string_view>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/asio_connection.h"
#include "common/framed_socket.h"
#include "common/host_storage.h"
#include "common/net_address.h"
#include "common/rank_contract.h"
#include "common/util.h"
#include "worker/agent/coordinator_link.h"
#include "worker/agent/gpu_monitor.h"
#include "worker/agent/rank_socket.h"
#include "worker/agent/rank_supervisor.h"
#include "worker/agent/stack_dump.h"

namespace vigil::agent {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct AgentOptions {
  CoordinatorLinkOptions link;
  std::string token_file, host, bind_addr, train_binary;
  std::string kernel_log = "/dev/kmsg";
  int slots = 1;
  int gpu_poll_ms = 250;
};

// The exit status of an agent whose host cannot see or write the job's storage.
constexpr int kExitRefused = 3;

class Agent {
 public:
  Agent(asio::io_context& io, AgentOptions o)
      : io_(io),
        o_(std::move(o)),
        log_(MakeLogger("agent." + o_.host)),
        signals_(io, SIGCHLD),
        stop_signals_(io, SIGINT, SIGTERM),
        heartbeat_(io),
        exit_timer_(io),
        gpu_timer_(io),
        gpus_(o_.kernel_log),
        ranks_socket_(
            io, [this](wire::Envelope report) { link_.Send(report); }, log_),
        supervisor_([this](const wire::RankExited& e) { OnRankExited(e); }),
        link_(io, o_.link, log_) {}

  Status Start() {
    auto token = ReadTokenFile(o_.token_file);
    if (!token.ok()) return token.status();
    token_ = token.value();
    VIGIL_RETURN_IF_ERROR(link_.Register(
        token_, [this](bool again) { return MakeHello(again); },
        [host = o_.host, bind = o_.bind_addr](const wire::HelloAck& ack, const std::string& local) {
          return CheckHost(host, bind, ack, local);
        },
        [this](wire::Envelope e) { OnOrder(std::move(e)); },
        [this](const wire::HelloAck& ack, bool again) { OnRegistered(ack, again); },
        [this](const std::string& why) {
          log_->error("{}: killing all ranks", why);
          ShutdownRanks(link_.storage_refused() ? kExitRefused : 1);
        }));
    // Ranks bind for collectives where this host reaches vigild, unless told.
    bind_addr_ = o_.bind_addr.empty() ? link_.local_address() : o_.bind_addr;
    // The unix socket ranks report through (relayed unchanged to vigild,
    // kept while vigild is away).
    VIGIL_RETURN_IF_ERROR(ranks_socket_.Open(token_));
    WaitChildren();
    stop_signals_.async_wait([this](boost::system::error_code ec2, int sig) {
      if (ec2) return;
      log_->warn("signal {}: killing all ranks", sig);
      ShutdownRanks(1);
    });
    Heartbeat();
    PollGpus();
    log_->info(
        "registered with vigild at {} (coordinator epoch {}) as {}, agent {} ({} slots; ranks "
        "bind {}); GPU faults from {}",
        link_.address(), link_.epoch(), o_.host, agent_index_, o_.slots, bind_addr_,
        gpus_.Describe());
    return Status::Ok();
  }

  ~Agent() {
    for (auto& t : dump_threads_) t.join();
  }
  int exit_code() const { return exit_code_; }
  bool refused() const { return link_.storage_refused(); }

 private:
  // The Hello of each registration; again, it names the ranks this agent
  // runs and those whose exits it kept, for the vigild that takes over.
  wire::Hello MakeHello(bool again) {
    wire::Hello hello;
    hello.set_protocol_version(kProtocolVersion);
    hello.set_role(wire::Hello::AGENT);
    hello.set_host(o_.host);
    hello.set_slots(static_cast<uint32_t>(o_.slots));
    hello.set_pid(static_cast<uint32_t>(::getpid()));
    if (!again) return hello;
    hello.set_reconnecting(true);
    for (auto& r : supervisor_.All()) *hello.add_live_ranks() = std::move(r);
    for (auto& r : link_.BufferedExits()) *hello.add_exited_ranks() = std::move(r);
    hello.set_dropped_messages(link_.dropped());
    return hello;
  }

  // The answer to each HelloAck (thread-safe: it reads only its arguments).
  static wire::HostReady CheckHost(const std::string& host, const std::string& bind,
                                   const wire::HelloAck& ack, const std::string& local) {
    wire::HostReady ready;
    const Status st = CheckHostStorage(host, ack.checkpoint_dir(), ack.storage_id(), ack.log_dir());
    ready.set_ok(st.ok());
    if (!st.ok()) ready.set_problem("host " + host + ": " + st.message());
    ready.set_bind_address(bind.empty() ? local : bind);
    return ready;
  }

  void OnRegistered(const wire::HelloAck& ack, bool again) {
    heartbeat_ms_ = ack.heartbeat_interval_ms() ? ack.heartbeat_interval_ms() : 1000;
    agent_index_ = ack.agent_index();
    if (ack.kill_grace_ms()) kill_grace_ms_ = ack.kill_grace_ms();
    if (ack.exit_wait_ms()) exit_wait_ms_ = ack.exit_wait_ms();
    if (ack.stack_dump_timeout_ms()) stack_dump_ms_ = ack.stack_dump_timeout_ms();
    if (ack.handshake_timeout_ms())
      ranks_socket_.set_handshake_timeout(std::chrono::milliseconds(ack.handshake_timeout_ms()));
    if (again) {
      log_->info("agent {} of coordinator epoch {}; {} rank(s) live here", agent_index_,
                 ack.epoch(), supervisor_.LiveRanks());
    }
  }

  void Heartbeat() {
    if (shutting_down_) return;
    wire::Envelope env;
    env.mutable_heartbeat();  // no readings: the message itself is the heartbeat
    for (const GpuReading& g : gpus_.Readings()) {
      auto* r = env.mutable_heartbeat()->add_gpus();
      r->set_gpu(static_cast<uint32_t>(g.gpu));
      r->set_temperature_celsius(g.temperature_celsius);
      r->set_slowdown_celsius(g.slowdown_celsius);
      r->set_uncorrected_ecc_errors(g.uncorrected_ecc_errors);
    }
    link_.SendIfConnected(env);
    heartbeat_.expires_after(std::chrono::milliseconds(heartbeat_ms_));
    heartbeat_.async_wait([this](boost::system::error_code ec) {
      if (!ec) Heartbeat();
    });
  }

  // GPU faults, mapped to the rank on that GPU (or the process the driver blamed).
  void PollGpus() {
    if (shutting_down_) return;
    for (const GpuFault& f : gpus_.Poll()) {
      int rank = -1;
      const auto ranks = supervisor_.Ranks(generation_);
      for (const auto& [r, pid] : ranks) {
        if (f.pid && *f.pid == pid) rank = r;
      }
      if (rank < 0 && f.gpu >= 0 && f.gpu < static_cast<int>(local_ranks_.size()))
        rank = local_ranks_[static_cast<size_t>(f.gpu)];
      log_->error("GPU fault ({}, {}): {}; rank {}", f.type, f.source, f.message, rank);
      wire::Envelope env;
      auto* g = env.mutable_gpu_fault();
      g->set_generation(generation_);
      g->set_rank(rank);
      g->set_gpu(f.gpu);
      g->set_pci_bus_id(f.pci_bus_id);
      g->set_xid(static_cast<uint32_t>(f.xid));
      g->set_type(f.type);
      g->set_source(f.source);
      g->set_message(f.message);
      g->set_at_us(NowMicros());
      link_.Send(env);
    }
    gpu_timer_.expires_after(std::chrono::milliseconds(o_.gpu_poll_ms));
    // Cancelled (an injected fault to report now) or expired: poll again.
    gpu_timer_.async_wait([this](boost::system::error_code) { PollGpus(); });
  }

  void InjectFault(const wire::InjectFault& f) {
    if (f.kind() == wire::InjectFault::KILL_AGENT) {
      log_->warn("chaos: killing this agent ({})", f.reason());
      spdlog::default_logger()->flush();
      log_->flush();
      ::raise(SIGKILL);
      return;
    }
    if (f.kind() != wire::InjectFault::XID) return;
    // The line the driver would log for the rank's GPU, blaming the rank.
    int gpu = -1;
    for (size_t i = 0; i < local_ranks_.size(); ++i) {
      if (local_ranks_[i] == static_cast<int>(f.rank())) gpu = static_cast<int>(i);
    }
    std::string pid = "'<unknown>'";
    for (const auto& [r, p] : supervisor_.Ranks(f.generation())) {
      if (r == static_cast<int>(f.rank())) pid = std::to_string(p);
    }
    const XidInfo* info = LookupXid(static_cast<int>(f.xid()));
    const std::string line = "NVRM: Xid (PCI:" + gpus_.BusIdOf(gpu) +
                             "): " + std::to_string(f.xid()) + ", pid=" + pid +
                             ", name=vigil-train, " + (info ? info->name : "injected") + ".";
    log_->warn("chaos: injecting '{}' ({})", line, f.reason());
    gpus_.Inject(line);
    gpu_timer_.cancel();  // report it now
  }

  void WaitChildren() {
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      supervisor_.Reap();
      WaitChildren();
    });
  }

  // Orders of the newest coordinator epoch (the link fences older ones).
  void OnOrder(wire::Envelope env) {
    switch (env.body_case()) {
      case wire::Envelope::kLaunchRanks:
        return Launch(env.launch_ranks());
      case wire::Envelope::kKillGeneration:
        return KillGeneration(env.kill_generation().generation(), env.kill_generation().grace_ms());
      case wire::Envelope::kSignalRank: {
        const auto& s = env.signal_rank();
        log_->warn("signal {} to rank {}: {}", s.signal(), s.rank(), s.reason());
        Status st = supervisor_.SignalRank(s.generation(), static_cast<int>(s.rank()), s.signal());
        if (!st.ok()) log_->warn("{}", st.ToString());
        return;
      }
      case wire::Envelope::kDiagnoseRanks:
        return Diagnose(env.diagnose_ranks().generation());
      case wire::Envelope::kInjectFault:
        return InjectFault(env.inject_fault());
      case wire::Envelope::kShutdown:
        log_->info("shutdown: {}", env.shutdown().reason());
        return ShutdownRanks(0);
      default:
        log_->warn("ignoring unexpected message {}", static_cast<int>(env.body_case()));
    }
  }

  void Diagnose(uint64_t generation) {
    wire::Envelope env;
    auto* d = env.mutable_diagnosis();
    d->set_generation(generation);
    std::vector<std::pair<pid_t, std::string>> targets;
    for (const auto& [rank, pid] : supervisor_.Ranks(generation)) {
      const ProcessState st = ReadProcessState(pid);
      auto* r = d->add_ranks();
      r->set_rank(static_cast<uint32_t>(rank));
      r->set_pid(static_cast<uint32_t>(pid));
      r->set_state(st.state);
      r->set_wchan(st.wchan);
      r->set_cpu_ticks(st.cpu_ticks);
      r->set_stack_file(log_dirs_[generation] + "/rank-" + std::to_string(rank) + ".gen-" +
                        std::to_string(generation) + ".stacks.txt");
      targets.emplace_back(pid, r->stack_file());
      log_->warn("rank {} (pid {}) of generation {}: state {} wchan {}", rank, pid, generation,
                 st.state, st.wchan);
    }
    link_.Send(env);
    if (targets.empty() || dumping_.count(generation)) return;
    // Off the event loop, one thread per rank (gdb takes a second or so);
    // the teardown waits for all of them.
    dumping_[generation] = static_cast<int>(targets.size());
    for (const auto& [pid, path] : targets) {
      dump_threads_.emplace_back([this, generation, pid = pid, path = path] {
        DumpStacks(pid, path, std::chrono::milliseconds(stack_dump_ms_));
        asio::post(io_, [this, generation] {
          if (--dumping_[generation] > 0) return;
          dumping_.erase(generation);
          log_->info("stacks of generation {} dumped", generation);
          if (auto it = deferred_kills_.find(generation); it != deferred_kills_.end()) {
            const uint32_t grace = it->second;
            deferred_kills_.erase(it);
            KillGeneration(generation, grace);
          }
        });
      });
    }
  }

  void Launch(const wire::LaunchRanks& l) {
    log_dirs_[l.generation()] = l.log_dir();
    generation_ = l.generation();
    local_ranks_.assign(l.ranks().begin(), l.ranks().end());
    int local = 0;
    for (uint32_t rank : l.ranks()) {
      RankLaunch r;
      r.generation = l.generation();
      r.rank = static_cast<int>(rank);
      r.local_rank = local++;
      r.binary = o_.train_binary;
      r.log_file = l.log_dir() + "/rank-" + std::to_string(rank) + ".gen-" +
                   std::to_string(l.generation()) + ".log";
      namespace rc = rank_contract;
      auto var = [](std::string_view name, const std::string& value) {
        return std::string(name) + "=" + value;
      };
      r.env = {var(rc::kEnvRank, std::to_string(rank)),
               var(rc::kEnvWorldSize, std::to_string(l.world_size())),
               var(rc::kEnvLocalRank, std::to_string(r.local_rank)),
               var(rc::kEnvGeneration, std::to_string(l.generation())),
               var(rc::kEnvStoreAddr, l.store_address()),
               var(rc::kEnvAgentSocket, ranks_socket_.path()),
               var(rc::kEnvTokenFile, o_.token_file),
               var(rc::kEnvJobFile, l.job_file()),
               var(rc::kEnvCheckpointDir, l.checkpoint_dir()),
               var(rc::kEnvResumeFrom, l.resume_from()),
               var(rc::kEnvBindAddr, bind_addr_),
               var(rc::kEnvHost, o_.host)};
      if (l.lr_scale() > 0) {
        char scale[32];
        std::snprintf(scale, sizeof(scale), "%.17g", l.lr_scale());
        r.env.push_back(var(rc::kEnvLrScale, scale));
      }
      if (!l.optimizer().empty()) r.env.push_back(var(rc::kEnvOptimizer, l.optimizer()));
      if (l.batch_per_rank() > 0)
        r.env.push_back(var(rc::kEnvBatchPerRank, std::to_string(l.batch_per_rank())));
      if (l.skip_batches() > 0) {
        r.env.push_back(var(rc::kEnvSkipBatches, std::to_string(l.skip_batches())));
        r.env.push_back(var(rc::kEnvSkipAtStep, std::to_string(l.skip_at_step())));
      }
      // Only a chaos job's ranks turn SIGUSR1 and friends into injected faults.
      if (l.chaos()) r.env.push_back(var(rc::kEnvChaos, "1"));
      auto pid = supervisor_.Spawn(r);
      if (!pid.ok()) {
        log_->error("cannot start rank {}: {}", rank, pid.status().ToString());
        wire::Envelope env;
        auto* e = env.mutable_rank_exited();
        e->set_generation(l.generation());
        e->set_rank(rank);
        e->set_exit_code(127);
        e->set_exited_at_us(NowMicros());
        link_.Send(env);
        continue;
      }
      log_->info("started rank {} of generation {} as pid {}", rank, l.generation(), pid.value());
    }
  }

  void OnRankExited(const wire::RankExited& e) {
    log_->info("rank {} (pid {}) of generation {} exited: code {} signal {}", e.rank(), e.pid(),
               e.generation(), e.exit_code(), e.signal());
    if (!shutting_down_) {
      wire::Envelope env;
      *env.mutable_rank_exited() = e;
      link_.Send(env);
    }
    MaybeFinishTeardown();
  }

  void KillGeneration(uint64_t generation, uint32_t grace_ms) {
    stopping_.insert(generation);
    if (dumping_.count(generation)) {
      // Its stacks are being written: kill it once they are (gdb is bounded).
      deferred_kills_[generation] = grace_ms;
      return;
    }
    supervisor_.SignalAll(static_cast<int64_t>(generation), SIGTERM, true);
    // A stopped rank acts on SIGTERM only once continued.
    supervisor_.SignalAll(static_cast<int64_t>(generation), SIGCONT, true);
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(grace_ms));
    timer->async_wait([this, timer, generation](boost::system::error_code) {
      if (supervisor_.LiveRanks(static_cast<int64_t>(generation)) > 0) {
        log_->warn("generation {} outlived its grace period: SIGKILL", generation);
        supervisor_.SignalAll(static_cast<int64_t>(generation), SIGKILL, true);
      }
    });
    MaybeFinishTeardown();
  }

  void MaybeFinishTeardown() {
    for (auto it = stopping_.begin(); it != stopping_.end();) {
      if (supervisor_.LiveRanks(static_cast<int64_t>(*it)) == 0) {
        if (!shutting_down_) {
          wire::Envelope env;
          env.mutable_generation_stopped()->set_generation(*it);
          link_.Send(env);
        }
        it = stopping_.erase(it);
      } else {
        ++it;
      }
    }
    if (shutting_down_ && supervisor_.LiveRanks() == 0) Exit();
  }

  void ShutdownRanks(int code) {
    if (shutting_down_) return;
    shutting_down_ = true;
    exit_code_ = code;
    heartbeat_.cancel();
    supervisor_.SignalAll(-1, SIGTERM, true);
    exit_timer_.expires_after(std::chrono::milliseconds(kill_grace_ms_));
    exit_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      supervisor_.SignalAll(-1, SIGKILL, true);
      exit_timer_.expires_after(std::chrono::milliseconds(exit_wait_ms_));
      exit_timer_.async_wait([this](boost::system::error_code ec2) {
        if (!ec2) Exit();
      });
    });
    MaybeFinishTeardown();
  }

  void Exit() {
    ranks_socket_.Close();
    link_.Close();
    io_.stop();
  }

  asio::io_context& io_;
  AgentOptions o_;
  std::shared_ptr<spdlog::logger> log_;
  asio::signal_set signals_, stop_signals_;
  asio::steady_timer heartbeat_, exit_timer_, gpu_timer_;
  GpuMonitor gpus_;
  uint64_t generation_ = 0;       // the newest launched here
  std::vector<int> local_ranks_;  // its ranks, by local index (= GPU index)
  RankSocket ranks_socket_;
  RankSupervisor supervisor_;
  CoordinatorLink link_;
  std::string token_;
  std::set<uint64_t> stopping_;
  std::map<uint64_t, std::string> log_dirs_;     // by generation
  std::map<uint64_t, int> dumping_;              // generation -> stack dumps still running
  std::map<uint64_t, uint32_t> deferred_kills_;  // generation -> grace, once dumped
  std::vector<std::thread> dump_threads_;
  std::string bind_addr_;  // what ranks bind for collectives
  uint32_t heartbeat_ms_ = 1000;
  uint32_t agent_index_ = 0;  // vigild's index of this agent
  // The job's bounds on this agent's own waits (HelloAck), until it says.
  uint32_t kill_grace_ms_ = 3000, exit_wait_ms_ = 2000, stack_dump_ms_ = 8000;
  bool shutting_down_ = false;
  int exit_code_ = 0;
};

}  // namespace
}  // namespace vigil::agent

int main(int argc, char** argv) {
  using namespace vigil::agent;
  CLI::App app{"vigil-agent: runs a job's trainer ranks on this host"};
  AgentOptions o;
  app.add_option("--coordinator", o.link.address, "vigild address host:port")->required();
  app.add_option("--coordinator-file", o.link.address_file,
                 "vigild's address file (vigild.addr), re-read to reconnect to a vigild that "
                 "restarted elsewhere");
  app.add_option("--token-file", o.token_file, "the job's auth token file")->required();
  app.add_option("--host", o.host, "this host's name in the job")->required();
  app.add_option("--slots", o.slots, "how many ranks this host can run")
      ->check(CLI::PositiveNumber);
  app.add_option("--bind-addr", o.bind_addr,
                 "address ranks bind for collectives (default: this host's end of its "
                 "connection to vigild)")
      ->check([](const std::string& a) {
        return vigil::IsWildcardAddress(a) ? "a wildcard reaches no rank on another host: give "
                                             "this host's address"
                                           : "";
      });
  app.add_option("--kernel-log", o.kernel_log,
                 "where NVIDIA Xid lines are read from (default /dev/kmsg; '' for none)");
  int register_timeout_ms = 30000, backoff_max_ms = 1000;
  app.add_option("--register-timeout-ms", register_timeout_ms,
                 "how long to try to connect and register with vigild")
      ->check(CLI::PositiveNumber);
  app.add_option("--reconnect-max-ms", backoff_max_ms,
                 "the longest wait between attempts to reach a vigild that went away")
      ->check(CLI::Range(10, 60000));
  app.add_option("--report-buffer", o.link.buffer_limit,
                 "messages kept for vigild while it is away (the oldest dropped past it)")
      ->check(CLI::PositiveNumber);
  app.add_option("--gpu-poll-ms", o.gpu_poll_ms, "how often GPU health is polled")
      ->check(CLI::Range(10, 60000));
  app.add_option("--train-binary", o.train_binary,
                 "vigil-train executable (default: next to this one)");
  CLI11_PARSE(app, argc, argv);
  o.link.register_timeout = std::chrono::milliseconds(register_timeout_ms);
  o.link.backoff_max = std::chrono::milliseconds(backoff_max_ms);
  if (o.train_binary.empty()) {
    o.train_binary =
        (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "vigil-train").string();
  }
  // SIGCHLD must be handled by Asio's signal_set, never ignored.
  ::signal(SIGPIPE, SIG_IGN);
  boost::asio::io_context io;
  Agent agent(io, o);
  if (auto st = agent.Start(); !st.ok()) {
    std::fprintf(stderr, "vigil-agent: %s\n", st.ToString().c_str());
    // Refused (this host cannot see or write the job's storage): not worth retrying.
    return agent.refused() ? kExitRefused : 1;
  }
  io.run();
  return agent.exit_code();
}
