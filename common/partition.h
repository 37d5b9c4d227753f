// Balanced contiguous partitions: how a flat buffer of `total` values is cut
// into `parts` pieces, the first `total % parts` of them one longer. Used for
// ZeRO ownership, ring-collective chunks and checkpoint shards, so all three
// agree on who owns what.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace vigil {

inline void BalancedRange(int64_t total, int part, int parts, int64_t* begin, int64_t* end) {
  const int64_t base = total / parts, extra = total % parts;
  *begin = part * base + std::min<int64_t>(part, extra);
  *end = *begin + base + (part < extra ? 1 : 0);
}

// parts + 1 offsets: piece p is [offsets[p], offsets[p + 1]).
inline std::vector<int64_t> BalancedOffsets(int64_t total, int parts) {
  std::vector<int64_t> out(parts + 1);
  for (int p = 0; p < parts; ++p) {
    int64_t e = 0;
    BalancedRange(total, p, parts, &out[p], &e);
  }
  out[parts] = total;
  return out;
}

}  // namespace vigil
