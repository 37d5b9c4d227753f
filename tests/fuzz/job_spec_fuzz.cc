// The job spec parser (common/job_spec.h) on any text: it never crashes,
// and a refusal names the file it read.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto spec = vigil::ParseJobSpec(text, "fuzz-job.yaml");
  if (!spec.ok() && spec.status().message().find("fuzz-job.yaml") == std::string::npos)
    std::abort();
  return 0;
}
