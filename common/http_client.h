// A minimal blocking HTTP/1.1 GET for the CLI and tests (vigild's API and
// /metrics are local and small). Every call has a deadline.
#pragma once

#include <chrono>
#include <string>

#include "common/status.h"

namespace vigil {

struct HttpResult {
  int status = 0;
  std::string body;
};

// A GET over HTTP/1.1 (Connection: close); a chunked body is decoded.
// A non-empty `bearer_token` is sent as `Authorization: Bearer <token>`.
Result<HttpResult> HttpGet(const std::string& host_port, const std::string& path,
                           std::chrono::milliseconds timeout, const std::string& bearer_token = {});

// A GET of vigild's API (/api/v1/*, which needs the job's token): the token
// is read from WORKDIR/token at each call (a run started again writes a new
// one). FailedPrecondition when the token file is missing or unreadable.
Result<HttpResult> ApiGet(const std::string& workdir, const std::string& host_port,
                          const std::string& path, std::chrono::milliseconds timeout);

// The body of a `Transfer-Encoding: chunked` response, or why it is malformed.
Result<std::string> DecodeChunked(const std::string& body);

}  // namespace vigil
