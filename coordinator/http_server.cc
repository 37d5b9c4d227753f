#include "coordinator/http_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "common/auth.h"

namespace vigil::coordinator {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

constexpr std::string_view kBearer = "Bearer ";

// True when the request's Authorization header carries exactly `token`.
bool HoldsToken(const http::request<http::string_body>& request, const std::string& token) {
  if (token.empty()) return false;
  auto it = request.find(http::field::authorization);
  if (it == request.end()) return false;
  const std::string_view value(it->value().data(), it->value().size());
  if (value.substr(0, kBearer.size()) != kBearer) return false;
  return auth::ProofsEqual(std::string(value.substr(kBearer.size())), token);
}

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, std::shared_ptr<HttpServer::State> state,
              boost::asio::thread_pool& reader)
      : stream_(std::move(socket)), state_(std::move(state)), reader_(reader) {
    state_->sessions.fetch_add(1);
    boost::system::error_code ec;
    auto peer = stream_.socket().remote_endpoint(ec);
    if (!ec) source_ = peer.address().to_string();
  }
  ~HttpSession() { state_->sessions.fetch_sub(1); }

  void Start() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(state_->limits.max_header_bytes));
    parser_->body_limit(state_->limits.max_body_bytes);
    stream_.expires_after(state_->limits.read_timeout);
    auto self = shared_from_this();
    http::async_read(stream_, buffer_, *parser_, [self](boost::beast::error_code ec, size_t) {
      if (!ec) {
        self->Respond(self->parser_->release());
      } else if (ec == http::error::header_limit) {
        self->Send({431, "text/plain", "request head too large\n"});
      } else if (ec == http::error::body_limit) {
        self->Send({413, "text/plain", "request body too large\n"});
      } else if (IsMalformed(ec)) {
        self->Send({400, "text/plain", "malformed request\n"});
      }
      // Otherwise the peer left, or took too long: nobody to answer.
    });
  }

 private:
  static bool IsMalformed(const boost::beast::error_code& ec) {
    const auto& parse_errors = make_error_code(http::error::bad_method).category();
    return ec.category() == parse_errors && ec != http::error::end_of_stream &&
           ec != http::error::partial_message;
  }

  void Respond(http::request<http::string_body> request) {
    if (state_->stopped) return;
    version_ = request.version();
    const std::string target(request.target());
    const auto q = target.find('?');
    const std::string path = target.substr(0, q);
    const std::string query = q == std::string::npos ? "" : target.substr(q + 1);
    auto it = state_->routes.find(path);
    if (request.method() != http::verb::get) {
      Send({405, "text/plain", "only GET is served\n"});
    } else if (it == state_->routes.end()) {
      Send({404, "text/plain", "no such path: " + path + "\n"});
    } else if (it->second.access == HttpAccess::kToken && !HoldsToken(request, state_->token)) {
      if (state_->on_refusal) state_->on_refusal(source_);
      Send({401, "text/plain", "this path needs the job's token: Authorization: Bearer <token>\n"},
           /*unauthorized=*/true);
    } else if (!it->second.off_loop) {
      Send(it->second.handler(query));
    } else if (state_->queued_off_loop.fetch_add(1) >= state_->limits.max_queued_off_loop) {
      state_->queued_off_loop.fetch_sub(1);
      Send({503, "text/plain", "busy: too many queries queued, try again\n"});
    } else {
      // The answer is written from the loop again (the stream is the loop's).
      // The session is handed back whole: its last reference never drops
      // on the reader thread.
      auto self = shared_from_this();
      boost::asio::post(reader_, [self, handler = it->second.handler, query]() mutable {
        self->state_->queued_off_loop.fetch_sub(1);
        HttpResponse r = handler(query);
        auto executor = self->stream_.get_executor();
        boost::asio::post(executor, [self = std::move(self), r = std::move(r)]() mutable {
          self->Send(std::move(r));
        });
      });
    }
  }

  void Send(HttpResponse r, bool unauthorized = false) {
    response_.result(static_cast<http::status>(r.status));
    response_.version(version_);
    response_.set(http::field::content_type, r.content_type);
    if (unauthorized) response_.set(http::field::www_authenticate, "Bearer realm=\"vigil\"");
    response_.keep_alive(false);
    response_.body() = std::move(r.body);
    response_.prepare_payload();
    stream_.expires_after(state_->limits.read_timeout);
    auto self = shared_from_this();
    http::async_write(stream_, response_, [self](boost::beast::error_code, size_t) {
      boost::beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    });
  }

  boost::beast::tcp_stream stream_;
  std::shared_ptr<HttpServer::State> state_;
  boost::asio::thread_pool& reader_;
  std::string source_ = "(unknown)";
  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  unsigned version_ = 11;
  http::response<http::string_body> response_;
};

// A request over the session cap: a fixed answer written without waiting
// (a fresh socket's send buffer takes it whole), then closed.
void RefuseBusy(tcp::socket& socket) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
      "Connection: close\r\n\r\nbusy: try again soon\n";
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  socket.write_some(boost::asio::buffer(kBusy.data(), kBusy.size()), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  // What of the request has arrived is read first: a close with unread
  // bytes resets the connection, and the client may never see the 503.
  char drain[4096];
  socket.read_some(boost::asio::buffer(drain), ec);
  socket.close(ec);
}

}  // namespace

HttpServer::HttpServer(boost::asio::io_context& io, const tcp::endpoint& at, HttpLimits limits)
    : acceptor_(io, at), accept_retry_(io), state_(std::make_shared<State>()) {
  state_->limits = limits;
}

HttpServer::~HttpServer() { state_->stopped = true; }

void HttpServer::Stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  accept_retry_.cancel();
}

void HttpServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of descriptors (or another accept error): the connection waits
      // in the backlog; the loop is not spun on it.
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) Accept();
      });
      return;
    }
    if (state_->sessions.load() >= state_->limits.max_sessions) {
      RefuseBusy(socket);
    } else {
      std::make_shared<HttpSession>(std::move(socket), state_, reader_)->Start();
    }
    Accept();
  });
}

}  // namespace vigil::coordinator
