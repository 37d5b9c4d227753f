// A tokenized corpus on disk: byte-level tokens behind a fixed header,
// memory-mapped for reading. Built by `vigil data prepare`.
//
//   offset  size  field
//   0       8     magic "VIGILTOK"
//   8       4     format version (1), little-endian
//   12      4     bytes per token (1: byte-level)
//   16      8     number of tokens
//   24      8     xxHash3 of the token bytes
//   32      32    reserved, zero
//   64      ...   tokens
//
// Opening checks the header and the size (cheap, done by every rank);
// Verify() also recomputes the checksum (a full read, done by `prepare` and
// `vigil data verify`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vigil::trainer {

inline constexpr size_t kTokenFileHeaderBytes = 64;

// Concatenates `inputs` byte for byte into a token file at `output`
// (written to a temporary, fsynced, renamed). Returns the token count.
Result<uint64_t> PrepareTokenFile(const std::vector<std::string>& inputs,
                                  const std::string& output);

class TokenFile {
 public:
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  static Result<std::unique_ptr<TokenFile>> Open(const std::string& path);
  Status Verify() const;

  uint64_t num_tokens() const { return num_tokens_; }
  const uint8_t* tokens() const { return data_ + kTokenFileHeaderBytes; }
  uint64_t checksum() const { return checksum_; }

 private:
  TokenFile(std::string path, const uint8_t* data, size_t size, uint64_t n, uint64_t checksum)
      : path_(std::move(path)), data_(data), size_(size), num_tokens_(n), checksum_(checksum) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
  uint64_t num_tokens_, checksum_;
};

}  // namespace vigil::trainer
