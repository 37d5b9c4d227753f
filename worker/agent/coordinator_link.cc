#include "worker/agent/coordinator_link.h"

#include <unistd.h>

#include <algorithm>

#include "common/framed_socket.h"
#include "common/vigild_addr.h"

namespace vigil::agent {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

namespace {

// Sends the host's storage check; its problem, when it failed.
Status AnswerCheck(const CoordinatorLink::HostCheck& check, const wire::HelloAck& ack,
                   FramedSocket* sock) {
  if (!check) return Status::Ok();
  wire::Envelope env;
  *env.mutable_host_ready() = check(ack, sock->LocalAddress());
  const Status sent = sock->Send(env);
  if (!env.host_ready().ok()) return Status::FailedPrecondition(env.host_ready().problem());
  return sent;
}

}  // namespace

CoordinatorLink::CoordinatorLink(asio::io_context& io, CoordinatorLinkOptions options,
                                 std::shared_ptr<spdlog::logger> log)
    : io_(io),
      o_(std::move(options)),
      log_(std::move(log)),
      address_(o_.address),
      watchdog_(io),
      retry_(io),
      grace_(io),
      rng_(std::random_device{}()),
      alive_(std::make_shared<bool>(true)) {}

CoordinatorLink::~CoordinatorLink() {
  alive_.reset();  // what an attempt posts from now on finds nobody
  JoinAttempt();
}

void CoordinatorLink::JoinAttempt() {
  if (attempt_.joinable()) attempt_.join();
}

Status CoordinatorLink::Register(const std::string& token, HelloMaker hello, HostCheck check,
                                 OrderHandler on_order, RegisteredHandler on_registered,
                                 GoneHandler on_gone) {
  token_ = token;
  make_hello_ = std::move(hello);
  check_ = std::move(check);
  on_order_ = std::move(on_order);
  on_registered_ = std::move(on_registered);
  on_gone_ = std::move(on_gone);
  wire::HelloAck ack;
  auto sock = FramedSocket::ConnectAndHello(address_, make_hello_(false), token_,
                                            o_.register_timeout, &ack);
  if (!sock.ok()) return sock.status();
  if (!fence_.Admit(ack.epoch())) {
    return Status::FailedPrecondition("vigild at " + address_ + " has coordinator epoch " +
                                      std::to_string(ack.epoch()) + ", older than epoch " +
                                      std::to_string(fence_.newest()) + " seen before");
  }
  if (Status st = AnswerCheck(check_, ack, &sock.value()); !st.ok()) {
    refused_ = st.code() == StatusCode::kFailedPrecondition;
    return st;
  }
  const std::string already_read = sock->TakeBuffered();
  Attach(sock->ReleaseFd(), already_read, ack, false);
  return Status::Ok();
}

void CoordinatorLink::Attach(int fd, const std::string& already_read, const wire::HelloAck& ack,
                             bool again) {
  tcp::socket sock(io_);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return Lost("cannot adopt the vigild socket: " + ec.message());
  }
  local_address_ = sock.local_endpoint(ec).address().to_string();
  heartbeat_timeout_ = milliseconds(ack.heartbeat_timeout_ms());
  if (ack.coordinator_grace_ms()) grace_period_ = milliseconds(ack.coordinator_grace_ms());
  conn_ = std::make_shared<TcpConnection>(std::move(sock), 0);
  last_heard_ = std::chrono::steady_clock::now();
  attempts_ = 0;
  grace_.cancel();
  if (on_registered_) on_registered_(ack, again);
  // What was kept while vigild was away, in order, before anything new.
  if (again) {
    log_->info(
        "re-registered with vigild at {} (coordinator epoch {}) after {} ms: {} kept "
        "message(s) follow, {} dropped",
        address_, fence_.newest(),
        std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - lost_at_)
            .count(),
        buffer_.size(), dropped_);
  }
  std::weak_ptr<bool> alive = alive_;
  conn_->Start(
      [this, alive](const TcpConnection::Ptr&, wire::Envelope env) {
        if (alive.lock()) OnMessage(std::move(env));
      },
      [this, alive](const TcpConnection::Ptr& c, const Status& why) {
        if (!alive.lock() || c != conn_) return;
        Lost("connection closed: " + why.message());
      },
      already_read);
  // Everything not acked, the oldest first: what the vigild before may
  // never have handled, and what was kept while it was away.
  for (const auto& env : buffer_) conn_->Send(env);
  Watch();
}

void CoordinatorLink::OnMessage(wire::Envelope env) {
  last_heard_ = std::chrono::steady_clock::now();
  if (!fence_.Admit(env.epoch())) {
    log_->error("refusing message {} of coordinator epoch {}: epoch {} has taken over ({} refused)",
                static_cast<int>(env.body_case()), env.epoch(), fence_.newest(), fence_.refused());
    return;
  }
  if (env.has_heartbeat()) {
    // What vigild has handled and committed is safe: forget it.
    const uint64_t acked = env.heartbeat().acked();
    while (!buffer_.empty() && buffer_.front().seq() <= acked) buffer_.pop_front();
    return;
  }
  if (on_order_) on_order_(std::move(env));
}

void CoordinatorLink::Watch() {
  if (heartbeat_timeout_.count() <= 0 || !conn_) return;  // an older vigild does not heartbeat
  watchdog_.expires_after(std::max(milliseconds(10), heartbeat_timeout_ / 5));
  watchdog_.async_wait([this](boost::system::error_code ec) {
    if (ec || !conn_) return;
    const auto silent = std::chrono::steady_clock::now() - last_heard_;
    if (silent > heartbeat_timeout_) {
      return Lost("no heartbeat from vigild for " +
                  std::to_string(std::chrono::duration_cast<milliseconds>(silent).count()) +
                  " ms (limits.heartbeat_timeout_ms " + std::to_string(heartbeat_timeout_.count()) +
                  ")");
    }
    Watch();
  });
}

void CoordinatorLink::Send(const wire::Envelope& env) {
  if (closing_) {
    if (conn_) conn_->Send(env);  // a goodbye: nobody will ack it
    return;
  }
  buffer_.push_back(env);
  buffer_.back().set_seq(next_seq_++);
  if (conn_) conn_->Send(buffer_.back());
  while (buffer_.size() > o_.buffer_limit) {
    buffer_.pop_front();
    ++dropped_;
  }
}

void CoordinatorLink::SendIfConnected(const wire::Envelope& env) {
  if (conn_) conn_->Send(env);
}

std::vector<wire::LiveRank> CoordinatorLink::BufferedExits() const {
  std::vector<wire::LiveRank> out;
  for (const auto& env : buffer_) {
    if (!env.has_rank_exited()) continue;
    wire::LiveRank r;
    r.set_generation(env.rank_exited().generation());
    r.set_rank(env.rank_exited().rank());
    r.set_pid(env.rank_exited().pid());
    out.push_back(std::move(r));
  }
  return out;
}

void CoordinatorLink::Close() {
  closing_ = true;
  watchdog_.cancel();
  retry_.cancel();
  grace_.cancel();
  if (conn_) conn_->CloseAfterWrites(Status::Ok());
}

void CoordinatorLink::Lost(const std::string& why) {
  watchdog_.cancel();
  if (auto c = std::move(conn_)) c->Close(Status::Unavailable(why));
  conn_.reset();
  if (closing_ || gone_) return;
  lost_at_ = std::chrono::steady_clock::now();
  log_->error("lost vigild at {}: {}; the ranks train on, reconnecting for up to {} ms", address_,
              why, grace_period_.count());
  grace_.expires_after(grace_period_);
  grace_.async_wait([this](boost::system::error_code ec) {
    if (ec || conn_ || closing_) return;
    gone_ = true;
    retry_.cancel();
    if (on_gone_) {
      on_gone_("vigild did not come back within limits.coordinator_grace_ms (" +
               std::to_string(grace_period_.count()) + " ms)");
    }
  });
  ScheduleAttempt();
}

std::chrono::milliseconds CoordinatorLink::Backoff() {
  // Full jitter over an exponentially growing ceiling: agents that lost the
  // same vigild do not all knock at once.
  const int64_t ceiling = std::min<int64_t>(o_.backoff_max.count(), o_.backoff_initial.count()
                                                                        << std::min(attempts_, 20));
  std::uniform_int_distribution<int64_t> pick(ceiling / 2, std::max<int64_t>(1, ceiling));
  return milliseconds(pick(rng_));
}

void CoordinatorLink::ScheduleAttempt() {
  if (closing_ || gone_ || conn_ || attempting_) return;
  retry_.expires_after(Backoff());
  retry_.async_wait([this](boost::system::error_code ec) {
    if (!ec) Attempt();
  });
}

std::string CoordinatorLink::CurrentAddress() {
  if (o_.address_file.empty()) return address_;
  auto addr = ReadVigildAddrFile(o_.address_file);
  return addr.ok() ? addr->rpc : address_;
}

void CoordinatorLink::Attempt() {
  if (closing_ || gone_ || conn_) return;
  JoinAttempt();  // the last one has posted its result already
  ++attempts_;
  attempting_ = true;
  address_ = CurrentAddress();
  const wire::Hello hello = make_hello_(true);
  struct Outcome {
    Result<FramedSocket> sock = Status::Internal("no attempt");
    wire::HelloAck ack;
    Status refused;  // the host's storage check failed
  };
  std::weak_ptr<bool> alive = alive_;
  attempt_ = std::thread([this, alive, hello, check = check_, address = address_, token = token_,
                          timeout = o_.attempt_timeout] {
    auto out = std::make_shared<Outcome>();
    out->sock = FramedSocket::ConnectAndHello(address, hello, token, timeout, &out->ack);
    if (out->sock.ok()) {
      // Refused (the check failed), or the answer could not be sent (try again).
      const Status answered = AnswerCheck(check, out->ack, &out->sock.value());
      if (answered.code() == StatusCode::kFailedPrecondition) {
        out->refused = answered;
      } else if (!answered.ok()) {
        out->sock = answered;
      }
    }
    asio::post(io_, [this, alive, out] {
      if (!alive.lock()) return;
      attempting_ = false;
      if (closing_ || gone_ || conn_) return;
      if (!out->sock.ok()) {
        if (attempts_ == 1 || attempts_ % 20 == 0)
          log_->warn("vigild at {} not back yet (attempt {}): {}", address_, attempts_,
                     out->sock.status().ToString());
        return ScheduleAttempt();
      }
      if (!fence_.Admit(out->ack.epoch())) {
        // A stale vigild (woken from a SIGSTOP) answered: not the one to rejoin.
        log_->error(
            "vigild at {} answered with coordinator epoch {}, older than epoch {}: "
            "ignored",
            address_, out->ack.epoch(), fence_.newest());
        return ScheduleAttempt();
      }
      if (!out->refused.ok()) {
        gone_ = true;
        refused_ = true;
        grace_.cancel();
        log_->error("vigild at {} refused this host: {}", address_, out->refused.message());
        if (on_gone_) on_gone_(out->refused.message());
        return;
      }
      const std::string already_read = out->sock->TakeBuffered();
      Attach(out->sock->ReleaseFd(), already_read, out->ack, true);
    });
  });
}

}  // namespace vigil::agent
