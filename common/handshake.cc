#include "common/handshake.h"

#include "common/auth.h"
#include "common/framing.h"
#include "common/vocabulary.h"

namespace vigil {

wire::Envelope ServerHandshake::Challenge() {
  server_nonce_ = auth::RandomNonce();
  wire::Envelope env;
  env.mutable_challenge()->set_protocol_version(kProtocolVersion);
  env.mutable_challenge()->set_server_nonce(server_nonce_);
  return env;
}

ServerHandshake::Verdict ServerHandshake::Check(const wire::Hello& hello) {
  // The nonce serves this Hello, whatever it says.
  const std::string nonce = std::move(server_nonce_);
  server_nonce_.clear();
  if (hello.protocol_version() != kProtocolVersion) {
    return {auth_reason::kProtocol, "protocol version " + std::to_string(hello.protocol_version()) +
                                        " != " + std::to_string(kProtocolVersion)};
  }
  if (token_.empty() || nonce.empty() || hello.client_nonce().size() != auth::kNonceBytes ||
      !auth::ProofsEqual(hello.proof(), auth::ClientProof(token_, nonce, hello.client_nonce(),
                                                          hello.role(), hello.host()))) {
    return {auth_reason::kBadProof,
            "authentication failed: the Hello does not prove the job's token"};
  }
  server_proof_ = auth::ServerProof(token_, hello.client_nonce(), nonce);
  return {};
}

wire::Envelope ServerHandshake::Accept() const {
  wire::Envelope env;
  env.mutable_hello_ack()->set_ok(true);
  env.mutable_hello_ack()->set_server_proof(server_proof_);
  return env;
}

wire::Envelope ServerHandshake::Refuse(const std::string& why) {
  wire::Envelope env;
  env.mutable_hello_ack()->set_ok(false);
  env.mutable_hello_ack()->set_error(why);
  return env;
}

}  // namespace vigil
