#include "worker/trainer/sample_order.h"

#include "worker/trainer/rng.h"

namespace vigil::trainer {

SampleOrder::SampleOrder(uint64_t num_samples, uint64_t seed)
    : n_(num_samples), seed_(seed), half_bits_(1) {
  while (half_bits_ < 32 && (uint64_t{1} << (2 * half_bits_)) < n_) ++half_bits_;
}

uint64_t SampleOrder::Permute(uint64_t i, uint64_t epoch) const {
  if (n_ <= 1) return 0;
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  const uint64_t key = MixSeed(seed_, epoch);
  uint64_t x = i;
  // Cycle-walk: the Feistel permutation is a bijection on the whole domain,
  // so repeating it from a point inside [0, n) returns inside [0, n).
  do {
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t f = MixSeed(key + round, right) & mask;
      const uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

uint64_t SampleOrder::At(uint64_t global_index) const {
  if (n_ == 0) return 0;
  return Permute(global_index % n_, global_index / n_);
}

}  // namespace vigil::trainer
