#include "worker/trainer/data_source.h"

#include <algorithm>
#include <vector>

#include "worker/trainer/file_corpus.h"
#include "worker/trainer/synthetic_data.h"

namespace vigil::trainer {

void FillBatch(const DataSource& corpus, uint64_t step, int rank, int world, int B, int T,
               std::vector<int32_t>* inputs, std::vector<int32_t>* targets) {
  inputs->resize(static_cast<size_t>(B) * T);
  targets->resize(static_cast<size_t>(B) * T);
  std::vector<int32_t> seq(T + 1);
  const uint64_t base = step * static_cast<uint64_t>(B) * world + static_cast<uint64_t>(rank) * B;
  for (int b = 0; b < B; ++b) {
    corpus.Sample(base + b, T, seq.data());
    std::copy(seq.begin(), seq.begin() + T, inputs->begin() + static_cast<long>(b) * T);
    std::copy(seq.begin() + 1, seq.end(), targets->begin() + static_cast<long>(b) * T);
  }
}

Result<std::unique_ptr<DataSource>> MakeDataSource(const JobSpec& spec) {
  if (spec.data.kind == "file") {
    auto corpus = FileCorpus::Open(spec.data.path, spec.model.seq_len, spec.data.seed);
    if (!corpus.ok()) return corpus.status();
    return std::unique_ptr<DataSource>(std::move(corpus.value()));
  }
  return std::unique_ptr<DataSource>(
      std::make_unique<SyntheticCorpus>(spec.data.seed, spec.model.vocab));
}

}  // namespace vigil::trainer
