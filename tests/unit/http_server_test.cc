// vigild's HTTP server: a handler routed off the loop (a logbook query over
// months of events) runs on the reader thread, and the loop goes on
// answering (and detecting) meanwhile. A route that needs the token answers
// only its bearer; requests too large, too many at once, or never finished
// are refused without disturbing the others.
#include "coordinator/http_server.h"

#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "common/framed_socket.h"
#include "common/http_client.h"

namespace vigil::coordinator {
namespace {

using namespace std::chrono_literals;

class HttpServerTest : public testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<HttpServer>(
        io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  }
  void Run() {
    server_->Start();
    address_ = "127.0.0.1:" + std::to_string(server_->endpoint().port());
    loop_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    boost::asio::post(io_, [this] { server_->Stop(); });
    work_.reset();
    io_.stop();
    if (loop_.joinable()) loop_.join();
    server_.reset();
  }

  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{
      boost::asio::make_work_guard(io_)};
  std::unique_ptr<HttpServer> server_;
  std::string address_;
  std::thread loop_;
};

TEST_F(HttpServerTest, AnOffLoopHandlerLeavesTheLoopFree) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::thread::id loop_thread, slow_thread;
  server_->Route("/loop", HttpAccess::kOpen, [&](const std::string& query) {
    loop_thread = std::this_thread::get_id();
    return HttpResponse{200, "text/plain", "loop " + query};
  });
  server_->RouteOffLoop("/slow", HttpAccess::kOpen, [&](const std::string& query) {
    slow_thread = std::this_thread::get_id();
    released.wait();
    return HttpResponse{200, "text/plain", "slow " + query};
  });
  Run();
  auto slow = std::async(std::launch::async, [&] { return HttpGet(address_, "/slow?a=1", 10s); });
  // The slow handler holds the reader thread; the loop answers at once.
  auto fast = HttpGet(address_, "/loop?b=2", 2s);
  ASSERT_TRUE(fast.ok()) << fast.status().ToString();
  EXPECT_EQ(fast->status, 200);
  EXPECT_EQ(fast->body, "loop b=2");
  EXPECT_EQ(slow.wait_for(0s), std::future_status::timeout) << "answered before it was released";
  release.set_value();
  auto answered = slow.get();
  ASSERT_TRUE(answered.ok()) << answered.status().ToString();
  EXPECT_EQ(answered->status, 200);
  EXPECT_EQ(answered->body, "slow a=1");
  EXPECT_EQ(loop_thread, loop_.get_id());
  EXPECT_NE(slow_thread, loop_.get_id());
  EXPECT_NE(slow_thread, std::thread::id());
}

TEST_F(HttpServerTest, UnknownPathsAndOtherMethodsAreRefused) {
  server_->RouteOffLoop("/x", HttpAccess::kOpen, [](const std::string&) {
    return HttpResponse{200, "text/plain", ""};
  });
  Run();
  auto missing = HttpGet(address_, "/nowhere", 2s);
  ASSERT_TRUE(missing.ok()) << missing.status().ToString();
  EXPECT_EQ(missing->status, 404);
  auto off = HttpGet(address_, "/x", 2s);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->status, 200);
}

// Raw bytes to the server, and whatever it answers before closing.
std::string Exchange(const std::string& address, const std::string& request) {
  auto sock = FramedSocket::Connect(address, 2s);
  EXPECT_TRUE(sock.ok()) << sock.status().ToString();
  if (!sock.ok()) return "";
  const int fd = sock->ReleaseFd();
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) answer.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return answer;
}

const std::string kToken = std::string(48, 'k');

TEST_F(HttpServerTest, ATokenRouteAnswersOnlyTheBearerOfTheToken) {
  std::vector<std::string> refused_from;
  server_->RequireToken(kToken);
  server_->OnRefusal([&](const std::string& source) { refused_from.push_back(source); });
  server_->Route("/api", HttpAccess::kToken, [](const std::string&) {
    return HttpResponse{200, "text/plain", "secret"};
  });
  server_->Route("/open", HttpAccess::kOpen, [](const std::string&) {
    return HttpResponse{200, "text/plain", "public"};
  });
  Run();
  auto none = HttpGet(address_, "/api", 2s);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(none->body.find("secret"), std::string::npos);
  auto wrong = HttpGet(address_, "/api", 2s, std::string(48, 'x'));
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->status, 401);
  auto prefix = HttpGet(address_, "/api", 2s, kToken.substr(0, 47));
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(prefix->status, 401);
  // Another scheme with the right secret is not a bearer.
  const std::string basic =
      Exchange(address_, "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + kToken +
                             "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(basic.rfind("HTTP/1.1 401", 0), 0u) << basic;
  EXPECT_NE(basic.find("WWW-Authenticate: Bearer"), std::string::npos) << basic;
  auto right = HttpGet(address_, "/api", 2s, kToken);
  ASSERT_TRUE(right.ok());
  EXPECT_EQ(right->status, 200);
  EXPECT_EQ(right->body, "secret");
  auto open = HttpGet(address_, "/open", 2s);
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(open->status, 200);
  // Each refusal was reported, from where it came; the answered ones not.
  EXPECT_EQ(refused_from, std::vector<std::string>(4, "127.0.0.1"));
}

TEST_F(HttpServerTest, ATokenRouteWithNoTokenSetRefusesEveryone) {
  server_->Route("/api", HttpAccess::kToken, [](const std::string&) {
    return HttpResponse{200, "text/plain", "secret"};
  });
  Run();
  auto empty = Exchange(address_,
                        "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                        "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(empty.rfind("HTTP/1.1 401", 0), 0u) << empty;
}

TEST_F(HttpServerTest, OversizedAndMalformedRequestsAreRefused) {
  server_->Route("/open", HttpAccess::kOpen, [](const std::string&) {
    return HttpResponse{200, "text/plain", "public"};
  });
  Run();
  const std::string big_head =
      "GET /open HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(16 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(Exchange(address_, big_head).rfind("HTTP/1.1 431", 0), 0u);
  const std::string big_body =
      "GET /open HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + std::string(4096, 'b');
  EXPECT_EQ(Exchange(address_, big_body).rfind("HTTP/1.1 413", 0), 0u);
  EXPECT_EQ(Exchange(address_, "NOT HTTP AT ALL\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  // The server goes on answering.
  auto ok = HttpGet(address_, "/open", 2s);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->status, 200);
}

TEST(HttpServerLimits, PastTheSessionCapAConnectionIsRefusedAndTheRestServed) {
  boost::asio::io_context io;
  HttpLimits limits;
  limits.max_sessions = 4;
  limits.read_timeout = 1500ms;
  HttpServer server(io, {boost::asio::ip::make_address("127.0.0.1"), 0}, limits);
  server.Route("/open", HttpAccess::kOpen, [](const std::string&) {
    return HttpResponse{200, "text/plain", "public"};
  });
  server.Start();
  const std::string address = "127.0.0.1:" + std::to_string(server.endpoint().port());
  auto work = boost::asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });
  // Four connections that never finish their request hold every session.
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) {
    auto sock = FramedSocket::Connect(address, 2s);
    ASSERT_TRUE(sock.ok());
    ASSERT_TRUE(sock->SendRaw("GET /open HT").ok());
    idle.push_back(sock->ReleaseFd());
  }
  std::this_thread::sleep_for(200ms);
  auto busy = HttpGet(address, "/open", 2s);
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  EXPECT_EQ(busy->status, 503);
  // Their read deadline frees the sessions; a request is answered again.
  std::this_thread::sleep_for(2000ms);
  auto served = HttpGet(address, "/open", 2s);
  ASSERT_TRUE(served.ok());
  EXPECT_EQ(served->status, 200);
  for (int fd : idle) ::close(fd);
  boost::asio::post(io, [&] { server.Stop(); });
  work.reset();
  io.stop();
  loop.join();
}

}  // namespace
}  // namespace vigil::coordinator
