#include "common/auth.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace vigil::auth {

namespace {

// Each field with its length first (4 bytes, big-endian): no two different
// field lists make the same message.
void AppendField(const std::string& field, std::string* out) {
  const auto n = static_cast<uint32_t>(field.size());
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(n >> shift));
  out->append(field);
}

std::string Hmac(const std::string& key, const std::string& message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest,
            &length)) {
    std::fprintf(stderr, "vigil: HMAC-SHA256 failed\n");
    std::abort();
  }
  return std::string(reinterpret_cast<const char*>(digest), length);
}

}  // namespace

std::string RandomNonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    std::fprintf(stderr, "vigil: no random source for a nonce (RAND_bytes failed)\n");
    std::abort();
  }
  return nonce;
}

std::string ClientProof(const std::string& token, const std::string& server_nonce,
                        const std::string& client_nonce, int role, const std::string& host) {
  std::string m;
  AppendField("vigil client proof v1", &m);
  AppendField(server_nonce, &m);
  AppendField(client_nonce, &m);
  AppendField(std::to_string(role), &m);
  AppendField(host, &m);
  return Hmac(token, m);
}

std::string ServerProof(const std::string& token, const std::string& client_nonce,
                        const std::string& server_nonce) {
  std::string m;
  AppendField("vigil server proof v1", &m);
  AppendField(client_nonce, &m);
  AppendField(server_nonce, &m);
  return Hmac(token, m);
}

bool ProofsEqual(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace vigil::auth
