// Training samples from a token file: the file is cut into windows of
// seq_len + 1 tokens at a stride of seq_len (each token is a target once per
// epoch), and the windows are visited in a SampleOrder permutation that
// changes every epoch.
#pragma once

#include <memory>

#include "worker/trainer/data_source.h"
#include "worker/trainer/sample_order.h"
#include "worker/trainer/token_file.h"

namespace vigil::trainer {

class FileCorpus : public DataSource {
 public:
  static Result<std::unique_ptr<FileCorpus>> Open(const std::string& path, int seq_len,
                                                  uint64_t seed);
  void Sample(uint64_t index, int seq_len, int32_t* out) const override;
  uint64_t windows() const { return order_.num_samples(); }

 private:
  FileCorpus(std::unique_ptr<TokenFile> file, int seq_len, uint64_t seed);
  std::unique_ptr<TokenFile> file_;
  int seq_len_;
  SampleOrder order_;
};

}  // namespace vigil::trainer
