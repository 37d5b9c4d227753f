// `vigil data prepare FILE... -o OUT` and `vigil data verify FILE`.
#include <cstdio>

#include "cli/commands.h"
#include "worker/trainer/token_file.h"

namespace vigil::cli {

int DataPrepare(const DataPrepareArgs& args) {
  auto n = trainer::PrepareTokenFile(args.inputs, args.output);
  if (!n.ok()) {
    std::fprintf(stderr, "vigil data prepare: %s\n", n.status().message().c_str());
    return n.status().code() == StatusCode::kIoError ? 1 : 2;
  }
  auto file = trainer::TokenFile::Open(args.output);
  if (!file.ok() || !file.value()->Verify().ok()) {
    std::fprintf(stderr, "vigil data prepare: %s does not read back\n", args.output.c_str());
    return 1;
  }
  std::printf("%s: %llu byte tokens from %zu files, xxh3 %016llx\n", args.output.c_str(),
              static_cast<unsigned long long>(n.value()), args.inputs.size(),
              static_cast<unsigned long long>(file.value()->checksum()));
  return 0;
}

int DataVerify(const std::string& path) {
  auto file = trainer::TokenFile::Open(path);
  Status st = file.ok() ? file.value()->Verify() : file.status();
  if (!st.ok()) {
    std::fprintf(stderr, "vigil data verify: %s\n", st.message().c_str());
    return st.code() == StatusCode::kNotFound ? 2 : 1;
  }
  std::printf("%s: ok, %llu tokens\n", path.c_str(),
              static_cast<unsigned long long>(file.value()->num_tokens()));
  return 0;
}

}  // namespace vigil::cli
