#include "worker/trainer/synthetic_data.h"

#include <algorithm>
#include <cmath>

#include "worker/trainer/rng.h"

namespace vigil::trainer {
namespace {

// Which of a state's four successors three random bits pick: successor 0
// for 0-3 (1/2), 1 for 4-5 (1/4), 2 for 6 (1/8), 3 for 7 (1/8).
constexpr int kSuccessorOfBits[8] = {0, 0, 0, 0, 1, 1, 2, 3};

}  // namespace

SyntheticCorpus::SyntheticCorpus(uint64_t seed, int vocab)
    : seed_(seed), symbols_(std::min(vocab, 64)) {
  Rng rng(MixSeed(seed, 0x5eed));
  successors_.resize(static_cast<size_t>(symbols_) * 4);
  for (int s = 0; s < symbols_; ++s) {
    int32_t* succ = successors_.data() + static_cast<size_t>(s) * 4;
    int n = 0;
    while (n < 4) {
      const int32_t c = static_cast<int32_t>(rng.Next() % symbols_);
      if (std::find(succ, succ + n, c) == succ + n) succ[n++] = c;
    }
  }
}

void SyntheticCorpus::Sample(uint64_t index, int seq_len, int32_t* out) const {
  Rng rng(MixSeed(seed_, index + 1));
  int32_t cur = static_cast<int32_t>(rng.Next() % symbols_);
  out[0] = cur;
  for (int t = 1; t <= seq_len; ++t) {
    const int k = kSuccessorOfBits[rng.Next() & 7];
    cur = successors_[static_cast<size_t>(cur) * 4 + k];
    out[t] = cur;
  }
}

std::optional<double> SyntheticCorpus::EntropyRateNats() const {
  int count[4] = {0, 0, 0, 0};
  for (int k : kSuccessorOfBits) ++count[k];
  double h = 0;
  for (int n : count) {
    const double p = n / 8.0;
    if (n) h -= p * std::log(p);
  }
  return h;
}

}  // namespace vigil::trainer
