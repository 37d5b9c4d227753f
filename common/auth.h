// Proof of the job's token without the token on the wire: a challenge and
// response with HMAC-SHA256 (OpenSSL's libcrypto), both ways.
//
//   server -> client  Challenge{server_nonce}            on accepting
//   client -> server  Hello{client_nonce, proof, ...}    proof = ClientProof(...)
//   server -> client  HelloAck{ok, server_proof, ...}    server_proof = ServerProof(...)
//
// Each side draws its nonce fresh for the connection, and each proof covers
// both nonces: a recorded handshake replayed on a new connection meets a
// new server nonce and fails; a server that does not hold the token cannot
// answer the client's nonce. The client's proof also covers its role and
// host, so a proof made for one cannot be used for another. The labels
// keep a client's proof from ever serving as a server's.
#pragma once

#include <cstddef>
#include <string>

namespace vigil::auth {

inline constexpr size_t kNonceBytes = 32;
inline constexpr size_t kProofBytes = 32;  // SHA-256

// kNonceBytes from the operating system's random source (RAND_bytes);
// aborts if there is none (nothing safe can be done without it).
std::string RandomNonce();

std::string ClientProof(const std::string& token, const std::string& server_nonce,
                        const std::string& client_nonce, int role, const std::string& host);
std::string ServerProof(const std::string& token, const std::string& client_nonce,
                        const std::string& server_nonce);

// In time independent of where they differ (CRYPTO_memcmp); false for
// different lengths.
bool ProofsEqual(const std::string& a, const std::string& b);

}  // namespace vigil::auth
