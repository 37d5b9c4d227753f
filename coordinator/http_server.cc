#include "coordinator/http_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>

namespace vigil::coordinator {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, const std::map<std::string, HttpServer::RouteEntry>& routes,
              boost::asio::thread_pool& reader)
      : stream_(std::move(socket)), routes_(routes), reader_(reader) {}

  void Start() {
    stream_.expires_after(std::chrono::seconds(10));
    auto self = shared_from_this();
    http::async_read(stream_, buffer_, request_, [self](boost::beast::error_code ec, size_t) {
      if (ec) return;
      self->Respond();
    });
  }

 private:
  void Respond() {
    const std::string target(request_.target());
    const auto q = target.find('?');
    const std::string path = target.substr(0, q);
    const std::string query = q == std::string::npos ? "" : target.substr(q + 1);
    auto it = routes_.find(path);
    if (request_.method() != http::verb::get) {
      Send({405, "text/plain", "only GET is served\n"});
    } else if (it == routes_.end()) {
      Send({404, "text/plain", "no such path: " + path + "\n"});
    } else if (!it->second.off_loop) {
      Send(it->second.handler(query));
    } else {
      // The answer is written from the loop again (the stream is the loop's).
      auto self = shared_from_this();
      boost::asio::post(reader_, [self, handler = it->second.handler, query] {
        HttpResponse r = handler(query);
        boost::asio::post(self->stream_.get_executor(),
                          [self, r = std::move(r)]() mutable { self->Send(std::move(r)); });
      });
    }
  }

  void Send(HttpResponse r) {
    response_.result(static_cast<http::status>(r.status));
    response_.version(request_.version());
    response_.set(http::field::content_type, r.content_type);
    response_.keep_alive(false);
    response_.body() = std::move(r.body);
    response_.prepare_payload();
    auto self = shared_from_this();
    http::async_write(stream_, response_, [self](boost::beast::error_code, size_t) {
      boost::beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    });
  }

  boost::beast::tcp_stream stream_;
  const std::map<std::string, HttpServer::RouteEntry>& routes_;
  boost::asio::thread_pool& reader_;
  boost::beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

HttpServer::HttpServer(boost::asio::io_context& io, const tcp::endpoint& at)
    : io_(io), acceptor_(io, at) {}

void HttpServer::Stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void HttpServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<HttpSession>(std::move(socket), routes_, reader_)->Start();
    Accept();
  });
}

}  // namespace vigil::coordinator
