// vigild's HTTP server: a handler routed off the loop (a logbook query over
// months of events) runs on the reader thread, and the loop goes on
// answering (and detecting) meanwhile.
#include "coordinator/http_server.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

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
  server_->Route("/loop", [&](const std::string& query) {
    loop_thread = std::this_thread::get_id();
    return HttpResponse{200, "text/plain", "loop " + query};
  });
  server_->RouteOffLoop("/slow", [&](const std::string& query) {
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
  server_->RouteOffLoop("/x", [](const std::string&) {
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

}  // namespace
}  // namespace vigil::coordinator
