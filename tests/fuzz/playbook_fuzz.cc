// The playbook parser (coordinator/playbook.h) on any text: it never
// crashes, and a refusal names the file it read.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "coordinator/playbook.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto playbook = vigil::coordinator::ParsePlaybook(text, "fuzz-playbook.yaml");
  if (!playbook.ok() && playbook.status().message().find("fuzz-playbook.yaml") == std::string::npos)
    std::abort();
  return 0;
}
