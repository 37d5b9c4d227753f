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
Result<HttpResult> HttpGet(const std::string& host_port, const std::string& path,
                           std::chrono::milliseconds timeout);

// The body of a `Transfer-Encoding: chunked` response, or why it is malformed.
Result<std::string> DecodeChunked(const std::string& body);

}  // namespace vigil
