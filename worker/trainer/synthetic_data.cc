#include "worker/trainer/synthetic_data.h"

#include <algorithm>
#include <cmath>

#include "worker/trainer/rng.h"

namespace vigil::trainer {

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
    const uint64_t r = rng.Next() & 7;  // 0-3: 1/2, 4-5: 1/4, 6: 1/8, 7: 1/8
    const int k = r < 4 ? 0 : (r < 6 ? 1 : (r == 6 ? 2 : 3));
    cur = successors_[static_cast<size_t>(cur) * 4 + k];
    out[t] = cur;
  }
}

double SyntheticCorpus::EntropyRateNats() { return 1.75 * std::log(2.0); }

}  // namespace vigil::trainer
