#include "worker/trainer/file_corpus.h"

namespace vigil::trainer {

FileCorpus::FileCorpus(std::unique_ptr<TokenFile> file, int seq_len, uint64_t seed)
    : file_(std::move(file)),
      seq_len_(seq_len),
      order_((file_->num_tokens() - 1) / seq_len, seed) {}

Result<std::unique_ptr<FileCorpus>> FileCorpus::Open(const std::string& path, int seq_len,
                                                     uint64_t seed) {
  auto file = TokenFile::Open(path);
  if (!file.ok()) return file.status();
  if (file.value()->num_tokens() < static_cast<uint64_t>(seq_len) + 1) {
    return Status::InvalidArgument(path + ": " + std::to_string(file.value()->num_tokens()) +
                                   " tokens cannot fill one sequence of " +
                                   std::to_string(seq_len) + " + 1");
  }
  return std::unique_ptr<FileCorpus>(new FileCorpus(std::move(file.value()), seq_len, seed));
}

void FileCorpus::Sample(uint64_t index, int seq_len, int32_t* out) const {
  // The window geometry is fixed at open; a caller asking for another length is a bug.
  if (seq_len != seq_len_) std::abort();
  const uint8_t* p = file_->tokens() + order_.At(index) * static_cast<uint64_t>(seq_len_);
  for (int t = 0; t <= seq_len_; ++t) out[t] = p[t];
}

}  // namespace vigil::trainer
