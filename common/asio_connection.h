// An asynchronous framed connection on one Asio io_context, for TCP and
// unix-domain stream sockets alike. Reads are continuous; every complete
// envelope goes to on_message. Writes are queued and sent in order. Any
// malformed or oversized frame, read or write error closes this connection
// (and only it) and calls on_close once with the reason; so does output
// queued past max_queued_bytes (a peer that does not read is dropped, not
// buffered for).
// All methods must be called from the io_context's thread.
#pragma once

#include <utility>  // Boost 1.74 Asio with C++20 needs this first.

#include <boost/asio.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/framing.h"
#include "common/status.h"

namespace vigil {

template <typename Socket>
class AsioConnection : public std::enable_shared_from_this<AsioConnection<Socket>> {
 public:
  using Ptr = std::shared_ptr<AsioConnection>;
  using MessageHandler = std::function<void(const Ptr&, wire::Envelope)>;
  using CloseHandler = std::function<void(const Ptr&, const Status&)>;

  static constexpr size_t kDefaultMaxQueuedBytes = size_t{64} << 20;

  AsioConnection(Socket socket, uint64_t id, size_t max_frame_bytes = kDefaultMaxFrameBytes,
                 size_t max_queued_bytes = kDefaultMaxQueuedBytes)
      : socket_(std::move(socket)),
        id_(id),
        reader_(max_frame_bytes),
        max_queued_bytes_(max_queued_bytes) {}

  // `already_read`: bytes that arrived before this object owned the socket
  // (after a synchronous handshake); they are decoded before anything else.
  void Start(MessageHandler on_message, CloseHandler on_close,
             const std::string& already_read = "") {
    on_message_ = std::move(on_message);
    on_close_ = std::move(on_close);
    reader_.Feed(already_read.data(), already_read.size());
    auto self = this->shared_from_this();
    boost::asio::post(socket_.get_executor(), [self] {
      if (self->DispatchBuffered()) self->ReadMore();
    });
  }

  void Send(const wire::Envelope& env) {
    if (closed_ || overflowed_) return;
    std::string frame = EncodeFrame(env);
    if (queued_bytes_ + frame.size() > max_queued_bytes_) {
      // Closed from the loop, not from inside the caller's Send (which may
      // be iterating over the connections this close would change).
      overflowed_ = true;
      auto self = this->shared_from_this();
      Status why = Status::Unavailable(
          "a reader too slow: " + std::to_string(queued_bytes_ + frame.size()) +
          " bytes queued for it, over the limit of " + std::to_string(max_queued_bytes_));
      boost::asio::post(socket_.get_executor(), [self, why] { self->Close(why); });
      return;
    }
    const bool idle = queue_.empty();
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    if (idle) WriteFront();
  }

  // The limit for frames not yet begun.
  void set_max_frame_bytes(size_t n) { reader_.set_max_frame_bytes(n); }
  size_t queued_bytes() const { return queued_bytes_; }
  // Bytes of a frame begun and not finished (one cut short, at a close).
  bool mid_frame() const { return reader_.buffered() > 0; }

  // Closes after the queued frames are written (used for goodbyes).
  void CloseAfterWrites(const Status& why) {
    if (queue_.empty()) return Close(why);
    close_after_writes_ = true;
    pending_close_ = why;
  }

  void Close(const Status& why) {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ec;
    socket_.shutdown(Socket::shutdown_both, ec);
    socket_.close(ec);
    if (on_close_) {
      auto cb = std::move(on_close_);
      cb(this->shared_from_this(), why);
    }
    on_message_ = nullptr;
  }

  uint64_t id() const { return id_; }
  bool closed() const { return closed_; }

 private:
  void ReadMore() {
    auto self = this->shared_from_this();
    socket_.async_read_some(
        boost::asio::buffer(buf_), [self](boost::system::error_code ec, size_t n) {
          if (self->closed_) return;
          if (ec) {
            Status eof = self->reader_.CheckEof();
            if (!eof.ok()) return self->Close(eof);
            return self->Close(Status::Unavailable(
                ec == boost::asio::error::eof ? "peer closed the connection" : ec.message()));
          }
          self->reader_.Feed(self->buf_, n);
          if (self->DispatchBuffered()) self->ReadMore();
        });
  }

  // Hands every complete envelope to on_message; false once closed.
  bool DispatchBuffered() {
    while (!closed_) {
      auto next = reader_.Next();
      if (!next.ok()) {
        Close(next.status());
        return false;
      }
      if (!next.value().has_value()) break;
      if (on_message_) on_message_(this->shared_from_this(), std::move(*next.value()));
    }
    return !closed_;
  }

  void WriteFront() {
    auto self = this->shared_from_this();
    boost::asio::async_write(socket_, boost::asio::buffer(queue_.front()),
                             [self](boost::system::error_code ec, size_t) {
                               if (self->closed_) return;
                               if (ec)
                                 return self->Close(Status::Unavailable("write: " + ec.message()));
                               self->queued_bytes_ -= self->queue_.front().size();
                               self->queue_.pop_front();
                               if (!self->queue_.empty()) return self->WriteFront();
                               if (self->close_after_writes_) self->Close(self->pending_close_);
                             });
  }

  Socket socket_;
  uint64_t id_;
  FrameReader reader_;
  char buf_[65536];
  std::deque<std::string> queue_;
  size_t max_queued_bytes_;
  size_t queued_bytes_ = 0;
  MessageHandler on_message_;
  CloseHandler on_close_;
  bool closed_ = false;
  bool overflowed_ = false;  // past max_queued_bytes_: closing
  bool close_after_writes_ = false;
  Status pending_close_;
};

using TcpConnection = AsioConnection<boost::asio::ip::tcp::socket>;
using UnixConnection = AsioConnection<boost::asio::local::stream_protocol::socket>;

}  // namespace vigil
