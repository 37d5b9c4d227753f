// The server's half of the handshake (common/auth.h), one per connection,
// as vigild plays it for agents, ranks and the CLI. The client's half is
// FramedSocket::ConnectAndHello.
//
//   server                                   client
//   Challenge{protocol, server_nonce}  --->
//                                      <---  Hello{..., client_nonce, proof}
//   Check(hello): the proof is HMAC(token, server_nonce, client_nonce,
//   role, host); Accept() / Refuse()   --->  HelloAck{ok, server_proof | error}
//
// The nonce serves one Hello: a second Hello on the connection (pipelined
// behind a refusal, or a replay) finds none and fails.
#pragma once

#include <string>

#include "common/vigil.pb.h"

namespace vigil {

class ServerHandshake {
 public:
  // Without a token (default) every Hello is refused.
  ServerHandshake() = default;
  explicit ServerHandshake(std::string token) : token_(std::move(token)) {}

  // The first frame the server sends. Draws this connection's nonce.
  wire::Envelope Challenge();

  // Why a Hello failed (an auth_reason:: of common/vocabulary.h, and a line
  // for the HelloAck and the log), or ok.
  struct Verdict {
    const char* reason = nullptr;
    std::string message;
    bool ok() const { return reason == nullptr; }
  };
  // Checks `hello` against this connection's Challenge: the protocol
  // version, then the proof (in constant time). Consumes the nonce, first:
  // any Hello after this one fails.
  Verdict Check(const wire::Hello& hello);

  // A HelloAck for the Hello Check() accepted, carrying the server's proof
  // (fields a role needs are the caller's to add).
  wire::Envelope Accept() const;
  // A HelloAck refusing, with the reason the client is told.
  static wire::Envelope Refuse(const std::string& why);

  // The server's proof, once a Hello has proved the token ("" before).
  const std::string& server_proof() const { return server_proof_; }

 private:
  std::string token_;
  std::string server_nonce_;
  std::string server_proof_;  // set once a Hello has proved the token
};

}  // namespace vigil
