// Where a job's ranks write is shared by every host (on a real cluster, a
// shared filesystem): checkpoints that any rank of a later generation may
// read, and the logs people read. vigild marks the run's checkpoint
// directory with a random storage id; an agent, before it counts as
// registered, checks that it sees that very directory (the mark, not only
// a directory of the same name) and can create files in it and in the log
// directory. A host that cannot is refused before any rank starts on it.
#pragma once

#include <string>

#include "common/status.h"

namespace vigil {

// The file in the run's checkpoint directory that holds its storage id.
inline constexpr const char kStorageMarkFile[] = ".vigil-storage";

// vigild: writes a new storage id into `checkpoint_dir` (durably) and
// returns it; a directory marked already keeps its id (a run taken over).
Result<std::string> MarkStorage(const std::string& checkpoint_dir);

// An agent for `host`: Ok, or an error that names the directory and what
// is wrong with it (missing, another filesystem's, not writable).
Status CheckHostStorage(const std::string& host, const std::string& checkpoint_dir,
                        const std::string& storage_id, const std::string& log_dir);

}  // namespace vigil
