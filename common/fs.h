// File-system helpers with the durability discipline the whole project uses:
// write a temporary file, fsync it, rename it over the target, fsync the
// directory. Errors name the path and the failing call.
#pragma once

#include <string>

#include "common/status.h"

namespace vigil {

Status WriteFileAtomic(const std::string& path, const std::string& contents, int mode = 0644);
Status FsyncPath(const std::string& path);  // a file or a directory
Status FsyncParentDir(const std::string& path);
Result<std::string> ReadFile(const std::string& path);
Status MakeDirs(const std::string& path);

}  // namespace vigil
