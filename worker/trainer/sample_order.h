// The order in which a corpus's samples are visited: a keyed bijection on
// [0, n) per (seed, epoch), so the sample at any global index is a pure
// function of (seed, global index) with O(1) memory and O(1) time, and a
// resumed run needs no state beyond the index it stopped at.
//
// Implementation: a 4-round Feistel network over the smallest even-bit-width
// domain >= n, with cycle-walking to stay inside [0, n).
#pragma once

#include <cstdint>

namespace vigil::trainer {

class SampleOrder {
 public:
  SampleOrder(uint64_t num_samples, uint64_t seed);
  // The sample visited at `global_index` (epoch = global_index / num_samples).
  uint64_t At(uint64_t global_index) const;
  // The permutation of one epoch at position i < num_samples.
  uint64_t Permute(uint64_t i, uint64_t epoch) const;
  uint64_t num_samples() const { return n_; }

 private:
  uint64_t n_, seed_;
  int half_bits_;  // the domain is 2^(2 * half_bits_)
};

}  // namespace vigil::trainer
