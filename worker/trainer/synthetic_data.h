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

namespace vigil::trainer {

class SyntheticCorpus {
 public:
  SyntheticCorpus(uint64_t seed, int vocab);

  // Writes seq_len + 1 tokens of sample `index` into out.
  void Sample(uint64_t index, int seq_len, int32_t* out) const;
  // Entropy rate of the source, nats per token.
  static double EntropyRateNats();
  int symbols() const { return symbols_; }

 private:
  uint64_t seed_;
  int symbols_;
  std::vector<int32_t> successors_;  // [symbols][4]
};

// The (inputs, targets) of one rank for one step: B sequences of T tokens,
// from global sample indices step * (B * world) + rank * B + [0, B).
void FillBatch(const SyntheticCorpus& corpus, uint64_t step, int rank, int world, int B, int T,
               std::vector<int32_t>* inputs, std::vector<int32_t>* targets);

}  // namespace vigil::trainer
