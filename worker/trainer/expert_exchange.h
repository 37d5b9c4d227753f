// The one collective the model itself needs: expert parallelism sends each
// rank's tokens to the ranks that own their experts and brings the results
// back. The model sees only this interface, so its math builds without any
// collective library (and a single process passes nullptr).
#pragma once

#include <cstdint>

namespace vigil::trainer {

class ExpertExchange {
 public:
  virtual ~ExpertExchange() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // All-to-all of equal blocks: block q of `send` (block_floats values at
  // send + q * block_floats) goes to rank q; block p of `recv` came from rank
  // p. Collective: every rank calls it with the same block size.
  virtual void AllToAll(const float* send, float* recv, int64_t block_floats) = 0;
};

}  // namespace vigil::trainer
