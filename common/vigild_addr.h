// WORKDIR/vigild.addr: where the vigild that holds a work directory's run
// serves. vigild writes it (atomically) once it listens; everything that
// must find vigild reads it: agents reconnecting, the CLI, `vigil run`
// following a job, a vigild taking the run over.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace vigil {

struct VigildAddr {
  std::string rpc;   // host:port of the agents' and the CLI's protocol
  std::string http;  // host:port of /metrics and /api/v1
  int pid = 0;       // vigild's pid (on the host it runs on)
  int64_t run_id = 0;
};

std::string VigildAddrPath(const std::string& workdir);

// NotFound while there is no file; Corruption for a file that is not a
// JSON object with string `rpc` and `http` (pid and run_id may be absent:
// 0).
Result<VigildAddr> ReadVigildAddr(const std::string& workdir);
// The same, from the file at `path` (an agent is given the file).
Result<VigildAddr> ReadVigildAddrFile(const std::string& path);

Status WriteVigildAddr(const std::string& workdir, const VigildAddr& addr);

// The port of a host:port, 0 when there is none.
int PortOf(const std::string& host_port);

}  // namespace vigil
