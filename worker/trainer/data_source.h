// Where training samples come from. A sample is seq_len + 1 tokens (inputs
// and the targets shifted by one) and is a pure function of its global
// index: the data order needs no state beyond the index, so a resumed run
// reads exactly the samples an uninterrupted one would.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/job_spec.h"
#include "common/status.h"

namespace vigil::trainer {

class DataSource {
 public:
  virtual ~DataSource() = default;
  // Writes seq_len + 1 tokens of sample `index` into out.
  virtual void Sample(uint64_t index, int seq_len, int32_t* out) const = 0;
  // The entropy rate of the targets in nats per token, where the source
  // knows it: the lowest mean loss any model can reach on it. A text
  // corpus has none (nullopt).
  virtual std::optional<double> EntropyRateNats() const { return std::nullopt; }
};

// The (inputs, targets) of one rank for one step: B sequences of T tokens,
// from global sample indices step * (B * world) + rank * B + [0, B).
void FillBatch(const DataSource& corpus, uint64_t step, int rank, int world, int B, int T,
               std::vector<int32_t>* inputs, std::vector<int32_t>* targets);

// The source a job spec names (data.kind: synthetic | file).
Result<std::unique_ptr<DataSource>> MakeDataSource(const JobSpec& spec);

}  // namespace vigil::trainer
