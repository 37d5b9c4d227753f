// Offline resharding: rewrites a committed checkpoint as the shards a run of
// another world size writes (layout.h), verifying every slice it reads. The
// trainer does not need it (any world size loads any checkpoint, reading
// only what it owns); it makes each rank of the new world read one file,
// and lets an operator prepare a shrink or a grow ahead of a restart.
#pragma once

#include <string>

#include "checkpoint/checkpoint.h"

namespace vigil::checkpoint {

// Writes <dst_root>/step-<N>/ (committed) from `src`, for `world` ranks.
// Returns the new directory.
Result<std::string> Reshard(Storage* storage, const std::string& src, const std::string& dst_root,
                            int world);

}  // namespace vigil::checkpoint
