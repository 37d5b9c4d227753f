#include "common/vigild_addr.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace vigil {

using nlohmann::json;

std::string VigildAddrPath(const std::string& workdir) { return workdir + "/vigild.addr"; }

Result<VigildAddr> ReadVigildAddr(const std::string& workdir) {
  return ReadVigildAddrFile(VigildAddrPath(workdir));
}

Result<VigildAddr> ReadVigildAddrFile(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return Status::NotFound(path + ": " + text.status().message());
  const json j = json::parse(text.value(), nullptr, false);
  auto is_string = [&](const char* key) { return j.contains(key) && j[key].is_string(); };
  auto is_integer = [&](const char* key) { return !j.contains(key) || j[key].is_number_integer(); };
  if (!j.is_object() || !is_string("rpc") || !is_string("http") || !is_integer("pid") ||
      !is_integer("run_id"))
    return Status::Corruption(path + ": not a vigild address (rpc, http, pid, run_id)");
  VigildAddr a;
  a.rpc = j["rpc"];
  a.http = j["http"];
  a.pid = j.value("pid", 0);
  a.run_id = j.value("run_id", int64_t{0});
  return a;
}

Status WriteVigildAddr(const std::string& workdir, const VigildAddr& a) {
  const json j{{"rpc", a.rpc}, {"http", a.http}, {"pid", a.pid}, {"run_id", a.run_id}};
  return WriteFileAtomic(VigildAddrPath(workdir), j.dump() + "\n");
}

int PortOf(const std::string& host_port) {
  const auto colon = host_port.rfind(':');
  return colon == std::string::npos ? 0 : std::atoi(host_port.c_str() + colon + 1);
}

}  // namespace vigil
