// A small HTTP/1.1 server on vigild's io_context (Boost.Beast): GET only,
// one request per connection. Routes are exact paths mapped to handlers
// returning (content type, body); unknown paths get 404. Used for /metrics
// and the JSON API.
//
// A handler runs on the event loop (it may read what the loop owns, and must
// be quick), or, routed with RouteOffLoop, on the server's own reader thread:
// for handlers that read files (the logbook: a query over months of events)
// and touch nothing of the loop's, so that no request delays detection.
#pragma once

#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <boost/asio.hpp>
#include <functional>
#include <map>
#include <string>

namespace vigil::coordinator {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const std::string& query)>;
  struct RouteEntry {
    Handler handler;
    bool off_loop = false;
  };

  HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at);
  void Route(const std::string& path, Handler handler) {
    routes_[path] = {std::move(handler), false};
  }
  // Runs on the reader thread, one request at a time, in arrival order.
  void RouteOffLoop(const std::string& path, Handler handler) {
    routes_[path] = {std::move(handler), true};
  }
  void Start() { Accept(); }
  void Stop();
  boost::asio::ip::tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

 private:
  void Accept();
  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::map<std::string, RouteEntry> routes_;
  // Last: destroyed first, finishing the request it runs while what its
  // handlers read still exists.
  boost::asio::thread_pool reader_{1};
};

}  // namespace vigil::coordinator
