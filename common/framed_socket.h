// A blocking, framed connection for the simple clients: trainer ranks (the
// rendezvous store over TCP, reports to their agent over a unix socket) and
// tests. Every receive takes a deadline; nothing here waits forever.
// Not thread-safe: one owner at a time.
#pragma once

#include <chrono>
#include <string>

#include "common/framing.h"
#include "common/status.h"

namespace vigil {

class FramedSocket {
 public:
  FramedSocket() = default;
  ~FramedSocket();
  FramedSocket(const FramedSocket&) = delete;
  FramedSocket& operator=(const FramedSocket&) = delete;
  FramedSocket(FramedSocket&& other) noexcept;
  FramedSocket& operator=(FramedSocket&& other) noexcept;

  // "host:port" over TCP, or "unix:/path" for a unix-domain socket.
  static Result<FramedSocket> Connect(const std::string& address,
                                      std::chrono::milliseconds timeout);

  Status Send(const wire::Envelope& env);
  // Sends raw bytes (tests use it to send malformed frames).
  Status SendRaw(const std::string& bytes);
  Result<wire::Envelope> Receive(std::chrono::milliseconds timeout);

  // The handshake (common/auth.h): connect, wait for the server's
  // Challenge, send `hello` with this connection's nonce and the proof that
  // we hold `token` (never the token), and wait for a positive HelloAck
  // whose server proof is right (copied to *ack if given). Each wait is
  // bounded by `timeout`.
  static Result<FramedSocket> ConnectAndHello(const std::string& address, wire::Hello hello,
                                              const std::string& token,
                                              std::chrono::milliseconds timeout,
                                              wire::HelloAck* ack = nullptr);
  // Hands the connection to another owner (an Asio socket): the bytes already
  // read but not yet returned as envelopes, then the file descriptor.
  std::string TakeBuffered() { return reader_.TakeBuffered(); }
  int ReleaseFd() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

  bool is_open() const { return fd_ >= 0; }
  // This end's address (IPv4 "a.b.c.d"), or "" for a unix socket or none.
  std::string LocalAddress() const;
  void Close();

 private:
  explicit FramedSocket(int fd) : fd_(fd) {}
  int fd_ = -1;
  FrameReader reader_;
};

// Splits "host:port"; fails with a message naming the address.
Status ParseHostPort(const std::string& address, std::string* host, int* port);

}  // namespace vigil
