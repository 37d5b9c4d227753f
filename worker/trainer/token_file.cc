#include "worker/trainer/token_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <fstream>

#include "common/fs.h"

namespace vigil::trainer {
namespace {

constexpr char kMagic[8] = {'V', 'I', 'G', 'I', 'L', 'T', 'O', 'K'};

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

}  // namespace

Result<uint64_t> PrepareTokenFile(const std::vector<std::string>& inputs,
                                  const std::string& output) {
  if (inputs.empty()) return Status::InvalidArgument("no input files");
  const std::string tmp = output + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("open " + tmp + ": " + std::strerror(errno));
  auto fail = [&](Status st) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return st;
  };
  auto write_all = [&](const void* data, size_t n) -> Status {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Status::IoError("write " + tmp + ": " + std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  };
  uint8_t header[kTokenFileHeaderBytes] = {};
  if (Status st = write_all(header, sizeof(header)); !st.ok()) return fail(st);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  uint64_t total = 0;
  std::vector<char> buf(1 << 20);
  for (const auto& input : inputs) {
    std::ifstream in(input, std::ios::binary);
    if (!in) {
      XXH3_freeState(state);
      return fail(Status::NotFound("cannot read input " + input));
    }
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const size_t got = static_cast<size_t>(in.gcount());
      if (got == 0) break;
      XXH3_64bits_update(state, buf.data(), got);
      total += got;
      if (Status st = write_all(buf.data(), got); !st.ok()) {
        XXH3_freeState(state);
        return fail(st);
      }
    }
    if (in.bad()) {
      XXH3_freeState(state);
      return fail(Status::IoError("read " + input));
    }
  }
  const uint64_t checksum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (total < 2)
    return fail(Status::InvalidArgument("inputs hold fewer than 2 bytes: nothing to train on"));
  std::memcpy(header, kMagic, 8);
  PutU32(header + 8, 1);
  PutU32(header + 12, 1);
  PutU64(header + 16, total);
  PutU64(header + 24, checksum);
  if (::pwrite(fd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) ||
      ::fsync(fd) != 0) {
    return fail(Status::IoError("finish " + tmp + ": " + std::strerror(errno)));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), output.c_str()) != 0) {
    return Status::IoError("rename " + tmp + ": " + std::strerror(errno));
  }
  VIGIL_RETURN_IF_ERROR(FsyncParentDir(output));
  return total;
}

Result<std::unique_ptr<TokenFile>> TokenFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("token file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(kTokenFileHeaderBytes)) {
    ::close(fd);
    return Status::Corruption(path + ": too short to be a token file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return Status::IoError("mmap " + path + ": " + std::strerror(errno));
  const auto* data = static_cast<const uint8_t*>(map);
  auto reject = [&](const std::string& why) {
    ::munmap(map, size);
    return Status::Corruption(path + ": " + why);
  };
  if (std::memcmp(data, kMagic, 8) != 0) return reject("not a vigil token file (bad magic)");
  if (GetU32(data + 8) != 1)
    return reject("unknown format version " + std::to_string(GetU32(data + 8)));
  if (GetU32(data + 12) != 1)
    return reject("unsupported token width " + std::to_string(GetU32(data + 12)));
  const uint64_t n = GetU64(data + 16);
  if (n + kTokenFileHeaderBytes != size) {
    return reject("header says " + std::to_string(n) + " tokens, the file holds " +
                  std::to_string(size - kTokenFileHeaderBytes));
  }
  ::madvise(map, size, MADV_RANDOM);
  return std::unique_ptr<TokenFile>(new TokenFile(path, data, size, n, GetU64(data + 24)));
}

Status TokenFile::Verify() const {
  if (XXH3_64bits(tokens(), num_tokens_) != checksum_) {
    return Status::Corruption(path_ + ": token checksum mismatch");
  }
  return Status::Ok();
}

TokenFile::~TokenFile() { ::munmap(const_cast<uint8_t*>(data_), size_); }

}  // namespace vigil::trainer
