// The rank contract (common/rank_contract.h) between vigil-agent, vigil-train
// and vigild, with real processes: the agent puts VIGIL_CHAOS=1 in a rank's
// environment only when vigild's LaunchRanks order says the job is a chaos
// job, and a rank launched without it keeps SIGUSR1's default disposition (a
// stray signal kills it; it never poisons a gradient), while a chaos rank
// turns the same signal into an injected NaN and exits kExitNonfinite.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>

#include "common/framed_socket.h"
#include "common/framing.h"
#include "common/handshake.h"
#include "common/host_storage.h"
#include "common/process.h"
#include "common/rank_contract.h"
#include "common/util.h"
#include "tests/integration/process_util.h"
#include "tests/unit/test_util.h"

namespace vigil {
namespace {

using std::chrono::milliseconds;
using testing::Slurp;
using testing::TempDir;
using testing::WaitUntil;

// The vigild side of one agent connection, enough to register an agent and
// give it orders: a TCP listener, one accepted connection, framed envelopes.
class FakeVigild {
 public:
  FakeVigild() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 4) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    address_ = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~FakeVigild() {
    if (conn_fd_ >= 0) ::close(conn_fd_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  const std::string& address() const { return address_; }

  // Accepts the agent, plays vigild's half of the handshake (common/auth.h)
  // with the job's `token`, answers its Hello with a positive HelloAck
  // naming the job's storage (as vigild does: `storage_id` is what
  // MarkStorage wrote in `checkpoint_dir`), and returns the agent's HostReady.
  std::optional<wire::HostReady> AcceptAgent(milliseconds timeout, const std::string& token,
                                             const std::string& checkpoint_dir,
                                             const std::string& storage_id,
                                             const std::string& log_dir) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    conn_fd_ = ::accept(listen_fd_, nullptr, nullptr);
    if (conn_fd_ < 0) return std::nullopt;
    ServerHandshake handshake(token);
    if (!Send(handshake.Challenge())) return std::nullopt;
    auto hello = Receive(timeout);
    if (!hello || !hello->has_hello() || hello->hello().role() != wire::Hello::AGENT ||
        !handshake.Check(hello->hello()).ok())
      return std::nullopt;
    wire::Envelope ack = handshake.Accept();
    ack.mutable_hello_ack()->set_heartbeat_interval_ms(1000);
    ack.mutable_hello_ack()->set_checkpoint_dir(checkpoint_dir);
    ack.mutable_hello_ack()->set_storage_id(storage_id);
    ack.mutable_hello_ack()->set_log_dir(log_dir);
    if (!Send(ack)) return std::nullopt;
    auto ready = Receive(timeout);  // the first message after the ack, always
    if (!ready || !ready->has_host_ready()) return std::nullopt;
    return ready->host_ready();
  }

  bool Send(const wire::Envelope& env) {
    const std::string bytes = EncodeFrame(env);
    return ::send(conn_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }

  // The next envelope the agent sends (heartbeats included), or nullopt.
  std::optional<wire::Envelope> Receive(milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto next = reader_.Next();
      if (!next.ok()) return std::nullopt;
      if (next->has_value()) return std::move(next->value());
      const auto left =
          std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{conn_fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
        return std::nullopt;
      char buf[4096];
      const ssize_t n = ::recv(conn_fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      reader_.Feed(buf, static_cast<size_t>(n));
    }
  }

  // Waits for the agent's report that `rank` of `generation` exited.
  std::optional<wire::RankExited> WaitForExit(uint64_t generation, uint32_t rank,
                                              milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto env = Receive(milliseconds(200));
      if (env && env->has_rank_exited() && env->rank_exited().generation() == generation &&
          env->rank_exited().rank() == rank) {
        return env->rank_exited();
      }
    }
    return std::nullopt;
  }

 private:
  int listen_fd_ = -1, conn_fd_ = -1;
  std::string address_;
  FrameReader reader_;
};

// KEY=VALUE lines of an `env` dump.
std::map<std::string, std::string> ParseEnv(const std::string& text) {
  std::map<std::string, std::string> vars;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) vars[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return vars;
}

// The agent's launch environment, seen by a stand-in rank that dumps it: the
// chaos order becomes VIGIL_CHAOS=1, and without the order the rank has no
// VIGIL_CHAOS even though the agent's own environment has one.
// A vigil-agent for host-0 of the vigild at `address`, reading no kernel log.
std::vector<std::string> AgentArgv(const std::string& address, const std::string& token_file) {
  return {std::string(VIGIL_BIN_DIR) + "/vigil-agent",
          "--coordinator",
          address,
          "--token-file",
          token_file,
          "--host",
          "host-0",
          "--kernel-log",
          ""};
}

TEST(RankLaunch, AgentSetsChaosOnlyWhenTheOrderSaysSo) {
  TempDir dir;
  std::ofstream(dir / "rank.sh") << "#!/bin/sh\nenv > \"$VIGIL_CHECKPOINT_DIR/env.txt\"\n";
  std::filesystem::permissions(dir / "rank.sh", std::filesystem::perms::owner_all);
  ASSERT_TRUE(WriteTokenFile(dir / "token").ok());
  FakeVigild vigild;
  ASSERT_FALSE(vigild.address().empty());
  SpawnOptions a;
  a.argv = AgentArgv(vigild.address(), dir / "token");
  a.argv.insert(a.argv.end(), {"--train-binary", dir / "rank.sh"});
  // Inherited by the agent, never by its ranks: only an order makes a chaos rank.
  a.env_add = {std::string(rank_contract::kEnvChaos) + "=1"};
  a.log_file = dir / "agent.log";
  a.parent_death_signal = SIGKILL;
  const pid_t agent = SpawnProcess(a).value();
  const std::string storage = MarkStorage(dir.path()).value();
  const auto ready = vigild.AcceptAgent(milliseconds(10000), ReadTokenFile(dir / "token").value(),
                                        dir.path(), storage, dir.path());
  ASSERT_TRUE(ready && ready->ok()) << Slurp(dir / "agent.log");
  // Not told where to bind, it binds where it reaches vigild.
  EXPECT_EQ(ready->bind_address(), "127.0.0.1");

  auto launch = [&](uint64_t generation, bool chaos) {
    const std::string ckpt = dir / ("gen-" + std::to_string(generation));
    std::filesystem::create_directories(ckpt);
    wire::Envelope env;
    auto* l = env.mutable_launch_ranks();
    l->set_generation(generation);
    l->set_world_size(1);
    l->add_ranks(0);
    l->set_store_address("127.0.0.1:1");
    l->set_job_file(dir / "job.yaml");
    l->set_log_dir(dir.path());
    l->set_checkpoint_dir(ckpt);
    l->set_chaos(chaos);
    EXPECT_TRUE(vigild.Send(env));
    auto exited = vigild.WaitForExit(generation, 0, milliseconds(10000));
    EXPECT_TRUE(exited.has_value()) << Slurp(dir / "agent.log");
    if (exited) {
      EXPECT_EQ(exited->exit_code(), 0) << Slurp(dir / "agent.log");
    }
    return ParseEnv(Slurp(ckpt + "/env.txt"));
  };
  const std::string chaos_var(rank_contract::kEnvChaos);
  const auto chaos = launch(1, true);
  EXPECT_EQ(chaos.count(chaos_var) ? chaos.at(chaos_var) : "(unset)", "1");
  EXPECT_EQ(chaos.count(std::string(rank_contract::kEnvRank)), 1u) << "not the rank's env dump";
  const std::string bind_var(rank_contract::kEnvBindAddr);
  EXPECT_EQ(chaos.count(bind_var) ? chaos.at(bind_var) : "(unset)", "127.0.0.1");
  const auto plain = launch(2, false);
  EXPECT_EQ(plain.count(std::string(rank_contract::kEnvRank)), 1u) << "not the rank's env dump";
  EXPECT_EQ(plain.count(chaos_var), 0u) << plain.at(chaos_var);

  ::kill(agent, SIGKILL);
  ::waitpid(agent, nullptr, 0);
}

// The agent's rank socket is in a directory only this user enters, and only
// a connection that proves the job's token as a rank may report through it:
// a wrong token, another role, a report before the Hello and a silent
// connection are refused, and nothing of theirs reaches vigild.
TEST(RankLaunch, TheRankSocketAdmitsOnlyARankThatProvesTheToken) {
  TempDir dir;
  std::ofstream(dir / "rank.sh") << "#!/bin/sh\nenv > \"$VIGIL_CHECKPOINT_DIR/env.txt\"\n";
  std::filesystem::permissions(dir / "rank.sh", std::filesystem::perms::owner_all);
  ASSERT_TRUE(WriteTokenFile(dir / "token").ok());
  const std::string token = ReadTokenFile(dir / "token").value();
  FakeVigild vigild;
  ASSERT_FALSE(vigild.address().empty());
  SpawnOptions a;
  a.argv = AgentArgv(vigild.address(), dir / "token");
  a.argv.insert(a.argv.end(), {"--train-binary", dir / "rank.sh"});
  a.log_file = dir / "agent.log";
  a.parent_death_signal = SIGKILL;
  const pid_t agent = SpawnProcess(a).value();
  const std::string storage = MarkStorage(dir.path()).value();
  ASSERT_TRUE(vigild.AcceptAgent(milliseconds(10000), token, dir.path(), storage, dir.path()));
  wire::Envelope env;
  auto* l = env.mutable_launch_ranks();
  l->set_generation(1);
  l->set_world_size(1);
  l->add_ranks(0);
  l->set_store_address("127.0.0.1:1");
  l->set_job_file(dir / "job.yaml");
  l->set_log_dir(dir.path());
  l->set_checkpoint_dir(dir.path());
  ASSERT_TRUE(vigild.Send(env));
  ASSERT_TRUE(vigild.WaitForExit(1, 0, milliseconds(10000))) << Slurp(dir / "agent.log");
  const auto vars = ParseEnv(Slurp(dir / "env.txt"));
  ASSERT_EQ(vars.count(std::string(rank_contract::kEnvAgentSocket)), 1u);
  const std::string socket = vars.at(std::string(rank_contract::kEnvAgentSocket));
  const std::string socket_dir = std::filesystem::path(socket).parent_path();

  struct stat st {};
  ASSERT_EQ(::stat(socket_dir.c_str(), &st), 0) << socket_dir;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u) << socket_dir;
  EXPECT_EQ(st.st_uid, ::getuid());
  ASSERT_EQ(::stat(socket.c_str(), &st), 0) << socket;
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u) << socket;

  auto rank_hello = [] {
    wire::Hello h;
    h.set_protocol_version(kProtocolVersion);
    h.set_role(wire::Hello::RANK_REPORTER);
    h.set_host("rank-0");
    return h;
  };
  auto report = [](const std::string& marker) {
    wire::Envelope r;
    r.mutable_rank_report()->set_kind(wire::RankReport::STEP);
    r.mutable_rank_report()->set_message(marker);
    return r;
  };
  const std::string address = "unix:" + socket;
  auto wrong = FramedSocket::ConnectAndHello(address, rank_hello(), std::string(64, 'w'),
                                             milliseconds(2000));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("does not prove the job's token"), std::string::npos)
      << wrong.status().ToString();
  wire::Hello as_store = rank_hello();
  as_store.set_role(wire::Hello::STORE_CLIENT);
  auto other_role = FramedSocket::ConnectAndHello(address, as_store, token, milliseconds(2000));
  ASSERT_FALSE(other_role.ok());
  EXPECT_NE(other_role.status().message().find("another role"), std::string::npos)
      << other_role.status().ToString();
  {
    auto raw = FramedSocket::Connect(address, milliseconds(2000));
    ASSERT_TRUE(raw.ok());
    auto challenge = raw->Receive(milliseconds(2000));
    ASSERT_TRUE(challenge.ok() && challenge->has_challenge());
    ASSERT_TRUE(raw->Send(report("before-the-hello")).ok());
    auto refused = raw->Receive(milliseconds(2000));
    ASSERT_TRUE(refused.ok() && refused->has_hello_ack());
    EXPECT_FALSE(refused->hello_ack().ok());
    EXPECT_EQ(raw->Receive(milliseconds(2000)).status().code(), StatusCode::kUnavailable);
  }
  {
    // Silent: closed at the handshake deadline (2 s: FakeVigild's ack says none).
    auto silent = FramedSocket::Connect(address, milliseconds(2000));
    ASSERT_TRUE(silent.ok());
    ASSERT_TRUE(silent->Receive(milliseconds(2000)).ok());
    const auto t0 = std::chrono::steady_clock::now();
    auto refused = silent->Receive(milliseconds(6000));
    ASSERT_TRUE(refused.ok() && refused->has_hello_ack()) << refused.status().ToString();
    EXPECT_NE(refused->hello_ack().error().find("handshake timeout"), std::string::npos);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(4000));
  }
  auto rank = FramedSocket::ConnectAndHello(address, rank_hello(), token, milliseconds(2000));
  ASSERT_TRUE(rank.ok()) << rank.status().ToString();
  ASSERT_TRUE(rank->Send(report("through-the-proof")).ok());
  std::vector<std::string> relayed;
  const auto deadline = std::chrono::steady_clock::now() + milliseconds(3000);
  while (std::chrono::steady_clock::now() < deadline &&
         std::find(relayed.begin(), relayed.end(), "through-the-proof") == relayed.end()) {
    if (auto e = vigild.Receive(milliseconds(200)); e && e->has_rank_report())
      relayed.push_back(e->rank_report().message());
  }
  EXPECT_EQ(relayed, std::vector<std::string>{"through-the-proof"});

  // The agent's exit takes its socket and the directory with it.
  ASSERT_EQ(::kill(agent, SIGTERM), 0);
  ::waitpid(agent, nullptr, 0);
  EXPECT_FALSE(std::filesystem::exists(socket_dir)) << socket_dir;
}

// A real vigil-train rank (world of one), started as the agent would start
// it, with vigild as its rendezvous store. vigild waits for agents that never
// come, so it launches nothing itself.
class RankSignals : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ / "job.yaml")
        << "name: signals\nmodel: {d_model: 16, layers: 1, heads: 2, seq_len: 8}\n"
           "schedule: {steps: 1000000, batch_per_rank: 2}\n"
           "world: {hosts: 1, ranks_per_host: 1}\ncheckpoint: {every_steps: 1000000}\n"
           "limits: {agent_wait_ms: 60000}\n";
    ASSERT_TRUE(WriteTokenFile(dir_ / "token").ok());
    vigild_ =
        testing::StartVigild(dir_ / "job.yaml", dir_ / "work", dir_ / "token", dir_ / "vigild.log");
    ASSERT_GT(vigild_, 0);
    auto addr = testing::WaitForVigildAddress(dir_ / "work", std::chrono::seconds(10));
    ASSERT_TRUE(addr.has_value()) << Slurp(dir_ / "vigild.log");
    store_ = addr->rpc;
  }
  void TearDown() override {
    for (pid_t p : {rank_, vigild_}) {
      if (p > 0) {
        ::kill(p, SIGKILL);
        ::waitpid(p, nullptr, 0);
      }
    }
  }

  // Starts the rank and waits until it trains.
  void StartTrainingRank(bool chaos) {
    namespace rc = rank_contract;
    auto var = [](std::string_view name, const std::string& value) {
      return std::string(name) + "=" + value;
    };
    SpawnOptions o;
    o.argv = {std::string(VIGIL_BIN_DIR) + "/vigil-train"};
    o.env_add = {var(rc::kEnvRank, "0"),
                 var(rc::kEnvWorldSize, "1"),
                 var(rc::kEnvStoreAddr, store_),
                 var(rc::kEnvTokenFile, dir_ / "token"),
                 var(rc::kEnvJobFile, dir_ / "job.yaml"),
                 var(rc::kEnvCheckpointDir, dir_ / "ckpt")};
    if (chaos) o.env_add.push_back(var(rc::kEnvChaos, "1"));
    o.env_drop_prefix = std::string(rc::kEnvPrefix);
    o.log_file = dir_ / "rank.log";
    o.new_process_group = true;
    o.parent_death_signal = SIGKILL;
    rank_ = SpawnProcess(o).value();
    // Past the point where main() would have installed the handlers.
    EXPECT_TRUE(WaitUntil(
        [&] { return Slurp(dir_ / "rank.log").find("training from step") != std::string::npos; },
        milliseconds(30000)))
        << Slurp(dir_ / "rank.log");
  }

  // Starts the rank, waits until it trains, sends it SIGUSR1; its wait status.
  int RankStatusAfterSigusr1(bool chaos) {
    StartTrainingRank(chaos);
    ::kill(rank_, SIGUSR1);
    int status = 0;
    EXPECT_TRUE(
        WaitUntil([&] { return ::waitpid(rank_, &status, WNOHANG) == rank_; }, milliseconds(30000)))
        << Slurp(dir_ / "rank.log");
    rank_ = -1;
    return status;
  }

  TempDir dir_;
  std::string store_;
  pid_t vigild_ = -1, rank_ = -1;
};

TEST_F(RankSignals, WithoutChaosAStraySigusr1KillsTheRankInsteadOfPoisoningIt) {
  const int status = RankStatusAfterSigusr1(false);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit code " << WEXITSTATUS(status) << "\n"
                                   << Slurp(dir_ / "rank.log");
  EXPECT_EQ(WTERMSIG(status), SIGUSR1);
  EXPECT_EQ(Slurp(dir_ / "rank.log").find("chaos:"), std::string::npos);
}

TEST_F(RankSignals, InAChaosJobSigusr1PoisonsTheNextGradient) {
  const int status = RankStatusAfterSigusr1(true);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status) << "\n"
                                 << Slurp(dir_ / "rank.log");
  EXPECT_EQ(WEXITSTATUS(status), rank_contract::kExitNonfinite) << Slurp(dir_ / "rank.log");
  EXPECT_NE(Slurp(dir_ / "rank.log").find("chaos: poisoning"), std::string::npos);
}

// A write to a peer that died (a Gloo pair, the agent's socket) fails with
// EPIPE and ends the rank as a collective failure (exit 3, collateral),
// not by SIGPIPE, which vigild would take for this rank's own crash.
TEST_F(RankSignals, SigpipeDoesNotKillTheRank) {
  StartTrainingRank(false);
  ::kill(rank_, SIGPIPE);
  int status = 0;
  EXPECT_FALSE(
      WaitUntil([&] { return ::waitpid(rank_, &status, WNOHANG) == rank_; }, milliseconds(1000)))
      << "the rank died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << "\n"
      << Slurp(dir_ / "rank.log");
}

}  // namespace
}  // namespace vigil

namespace vigil {
namespace {

// An agent that cannot see the job's storage as vigild made it refuses the
// job at registration, naming the directory, and exits 3 (nothing to retry).
TEST(RankLaunch, AgentRefusesAJobWhoseStorageItCannotSee) {
  TempDir dir;
  ASSERT_TRUE(WriteTokenFile(dir / "token").ok());
  std::filesystem::create_directories(dir / "ckpt");
  std::filesystem::create_directories(dir / "logs");
  const std::string storage = MarkStorage(dir / "ckpt").value();
  struct Case {
    std::string name, checkpoint_dir, storage_id, log_dir, expected;
  };
  const std::vector<Case> cases = {
      {"missing", dir / "nowhere", storage, dir / "logs", "cannot see the checkpoint directory"},
      // A directory of the same name that is not the shared one.
      {"another", dir / "logs", storage, dir / "logs", "is not the one vigild made"},
      {"stale", dir / "ckpt", "0123", dir / "logs", "holds another storage id"},
      {"no-logs", dir / "ckpt", storage, dir / "nologs", "cannot see the log directory"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeVigild vigild;
    ASSERT_FALSE(vigild.address().empty());
    SpawnOptions a;
    a.argv = AgentArgv(vigild.address(), dir / "token");
    a.log_file = dir / ("agent-" + c.name + ".log");
    a.parent_death_signal = SIGKILL;
    const pid_t agent = SpawnProcess(a).value();
    const auto ready = vigild.AcceptAgent(milliseconds(10000), ReadTokenFile(dir / "token").value(),
                                          c.checkpoint_dir, c.storage_id, c.log_dir);
    ASSERT_TRUE(ready.has_value()) << Slurp(a.log_file);
    EXPECT_FALSE(ready->ok());
    EXPECT_NE(ready->problem().find(c.expected), std::string::npos) << ready->problem();
    EXPECT_NE(ready->problem().find("host-0"), std::string::npos) << ready->problem();
    int status = 0;
    ASSERT_EQ(::waitpid(agent, &status, 0), agent);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 3) << status;
    EXPECT_NE(Slurp(a.log_file).find(c.expected), std::string::npos) << Slurp(a.log_file);
  }
}

}  // namespace
}  // namespace vigil
