// The synthetic corpus: a seeded first-order Markov source over byte tokens
// with a known entropy rate, so "the model learned" is a number. Each state
// (one of `symbols` byte values) has four distinct successors with
// probabilities 1/2, 1/4, 1/8, 1/8: an entropy rate of 1.75 bits
// (1.2130 nats) per token after the first.
//
// Sample i is a pure function of (seed, i): the data order needs no state
// beyond the global sample index, so a resumed run reads exactly the bytes an
// uninterrupted one would.
#pragma once

#include <cstdint>
#include <vector>

#include "worker/trainer/data_source.h"

namespace vigil::trainer {

class SyntheticCorpus : public DataSource {
 public:
  SyntheticCorpus(uint64_t seed, int vocab);

  void Sample(uint64_t index, int seq_len, int32_t* out) const override;
  // Computed from the successor probabilities Sample draws with; every
  // state's successors are distinct, so this is each target's entropy given
  // the token before it, whatever the seed and vocabulary.
  std::optional<double> EntropyRateNats() const override;
  int symbols() const { return symbols_; }

 private:
  uint64_t seed_;
  int symbols_;
  std::vector<int32_t> successors_;  // [symbols][4]
};

}  // namespace vigil::trainer
