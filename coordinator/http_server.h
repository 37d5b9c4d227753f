// A small HTTP/1.1 server on vigild's io_context (Boost.Beast): GET only,
// one request per connection. Routes are exact paths mapped to handlers
// returning (content type, body); unknown paths get 404. Used for /metrics
// and the JSON API.
//
// A handler runs on the event loop (it may read what the loop owns, and must
// be quick), or, routed with RouteOffLoop, on the server's own reader thread:
// for handlers that read files (the logbook: a query over months of events)
// and touch nothing of the loop's, so that no request delays detection.
//
// Access: a route is kOpen or kToken. A kToken route answers only a request
// whose `Authorization: Bearer <token>` holds the job's token (compared in
// constant time); any other gets 401, and the refusal is reported (source
// address) for the auth-failure log. Bounds (HttpLimits): the request's
// head and body sizes (431 / 413), the time to read a request (closed), the
// requests served at once (503, the connection closed at once) and the
// requests queued for the reader thread (503).
#pragma once

#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <atomic>
#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace vigil::coordinator {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpLimits {
  size_t max_header_bytes = 8 * 1024;
  size_t max_body_bytes = 1024;  // GET only: a body is never needed
  std::chrono::milliseconds read_timeout{10000};
  int max_sessions = 64;         // requests being read or answered at once
  int max_queued_off_loop = 16;  // requests waiting for the reader thread
};

enum class HttpAccess { kOpen, kToken };

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& query)>;
  // Called on the loop for each request refused for want of the token.
  using RefusalSink = std::function<void(const std::string& source_address)>;
  struct RouteEntry {
    Handler handler;
    HttpAccess access = HttpAccess::kToken;
    bool off_loop = false;
  };

  HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at,
             HttpLimits limits = {});
  // The token kToken routes require. Until set, a kToken route refuses
  // every request (there is no way to leave a kToken route open).
  void RequireToken(std::string token) { state_->token = std::move(token); }
  void OnRefusal(RefusalSink sink) { state_->on_refusal = std::move(sink); }

  void Route(const std::string& path, HttpAccess access, Handler handler) {
    state_->routes[path] = {std::move(handler), access, false};
  }
  // Runs on the reader thread, one request at a time, in arrival order.
  void RouteOffLoop(const std::string& path, HttpAccess access, Handler handler) {
    state_->routes[path] = {std::move(handler), access, true};
  }
  void Start() { Accept(); }
  void Stop();
  ~HttpServer();
  boost::asio::ip::tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

  // What every session shares, alive as long as the last of them.
  struct State {
    HttpLimits limits;
    std::map<std::string, RouteEntry> routes;
    std::string token;
    RefusalSink on_refusal;
    std::atomic<int> sessions{0};
    std::atomic<int> queued_off_loop{0};
    // The server is gone: a session still reading hands nothing to its
    // reader thread (gone too) and answers nothing.
    std::atomic<bool> stopped{false};
  };

 private:
  void Accept();
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;  // out of descriptors: accept again later
  std::shared_ptr<State> state_;
  // Last: destroyed first, finishing the request it runs while what its
  // handlers read still exists.
  boost::asio::thread_pool reader_{1};
};

}  // namespace vigil::coordinator
