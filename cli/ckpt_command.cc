// `vigil ckpt ls|verify|inspect|reshard`: what an on-call engineer needs to
// trust (or distrust) a checkpoint without starting a job.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/reshard.h"
#include "cli/commands.h"

namespace vigil::cli {

using nlohmann::json;
namespace ck = vigil::checkpoint;
namespace fs = std::filesystem;

namespace {

ck::Storage* Disk() { return ck::Storage::Default(); }

// Every checkpoint directory under root (committed or debris); with run-*
// folders (a work directory's checkpoints/), those below each, newest first.
std::vector<std::string> CheckpointDirs(const std::string& root) {
  std::vector<std::string> out;
  auto names = Disk()->ListDir(root);
  if (!names.ok()) return out;
  std::vector<std::string> runs;
  for (auto it = names->rbegin(); it != names->rend(); ++it) {
    if (it->rfind("step-", 0) == 0) out.push_back(root + "/" + *it);
    if (it->rfind("run-", 0) == 0) runs.push_back(root + "/" + *it);
  }
  for (const auto& run : runs) {
    for (auto& d : CheckpointDirs(run)) out.push_back(std::move(d));
  }
  return out;
}

std::string Shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

int CkptLs(const CkptArgs& args) {
  if (!fs::is_directory(args.path)) {
    std::fprintf(stderr, "vigil ckpt ls: %s is not a directory\n", args.path.c_str());
    return 2;
  }
  json rows = json::array();
  for (const auto& dir : CheckpointDirs(args.path)) {
    json row{{"path", dir}};
    const std::string name = fs::path(dir).filename();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) {
      row["state"] = "incomplete";
      row["error"] = "never committed (a save in progress or a crash); not loadable";
    } else {
      // The cheap checks only (manifest, shard sizes): `verify` reads every byte.
      auto reader = ck::CheckpointReader::Open(Disk(), dir);
      if (reader.ok()) {
        const auto& m = reader.value()->manifest();
        row["state"] = "ok";
        row["step"] = m.step;
        row["world_size"] = m.world_size;
        row["bytes"] = m.total_bytes();
        row["tensors"] = m.tensors.size();
        row["optimizer"] = m.optimizer;
        row["tokens_seen"] = m.tokens_seen;
      } else {
        row["state"] = "corrupt";
        row["error"] = reader.status().message();
      }
    }
    rows.push_back(std::move(row));
  }
  if (args.output == "json") {
    std::cout << rows.dump() << "\n";
    return 0;
  }
  std::printf("%-10s %-10s %-6s %14s %-8s %s\n", "STEP", "STATE", "WORLD", "BYTES", "OPTIM",
              "PATH");
  for (const auto& r : rows) {
    std::printf("%-10s %-10s %-6s %14s %-8s %s\n",
                r.contains("step") ? std::to_string(r["step"].get<int64_t>()).c_str() : "-",
                r["state"].get<std::string>().c_str(),
                r.contains("world_size") ? std::to_string(r["world_size"].get<int>()).c_str() : "-",
                r.contains("bytes") ? std::to_string(r["bytes"].get<int64_t>()).c_str() : "-",
                r.contains("optimizer") ? r["optimizer"].get<std::string>().c_str() : "-",
                r["path"].get<std::string>().c_str());
    if (r.contains("error")) std::printf("           %s\n", r["error"].get<std::string>().c_str());
  }
  return 0;
}

int CkptVerify(const CkptArgs& args) {
  auto reader = ck::CheckpointReader::Open(Disk(), args.path);
  Status st = reader.ok() ? reader.value()->VerifyAll() : reader.status();
  if (!st.ok()) {
    std::fprintf(stderr, "vigil ckpt verify: FAILED: %s\n", st.message().c_str());
    return 1;
  }
  const auto& m = reader.value()->manifest();
  std::printf("%s: ok: step %lld, %lld bytes in %d shards, %zu tensors, every checksum verified\n",
              args.path.c_str(), static_cast<long long>(m.step),
              static_cast<long long>(reader.value()->bytes_read()), m.world_size, m.tensors.size());
  return 0;
}

int CkptInspect(const CkptArgs& args) {
  auto reader = ck::CheckpointReader::Open(Disk(), args.path);
  if (!reader.ok()) {
    std::fprintf(stderr, "vigil ckpt inspect: %s\n", reader.status().message().c_str());
    return 1;
  }
  const auto& m = reader.value()->manifest();
  if (args.output == "json") {
    // The manifest is the whole story, in its own format.
    std::cout << m.ToJson();
    return 0;
  }
  std::printf("checkpoint   %s\n", args.path.c_str());
  std::printf("step         %lld (tokens seen %lld)\n", static_cast<long long>(m.step),
              static_cast<long long>(m.tokens_seen));
  std::printf("data order   seed %llu, next sample %lld, %lld samples per step\n",
              static_cast<unsigned long long>(m.data_loader.seed),
              static_cast<long long>(m.data_loader.next_sample),
              static_cast<long long>(m.data_loader.samples_per_step));
  std::printf("optimizer    %s (moment step %lld), lr scale %g\n", m.optimizer.c_str(),
              static_cast<long long>(m.optimizer_step), m.lr_scale);
  std::printf("written by   %d ranks; experts %d (%s), %s\n", m.world_size, m.layout.experts,
              m.layout.expert_placement.c_str(), m.layout.device.c_str());
  std::printf("config       %s %s\n", m.config_hash.c_str(), m.config_json.c_str());
  std::printf("state        %lld parameters x %zu sections = %lld bytes\n",
              static_cast<long long>(m.param_count), m.sections.size(),
              static_cast<long long>(m.total_bytes()));
  std::printf("\n%-40s %-5s %-18s %12s %7s\n", "TENSOR", "DTYPE", "SHAPE", "BYTES", "SLICES");
  for (const auto& t : m.tensors) {
    std::printf("%-40s %-5s %-18s %12lld %7zu\n", t.full_name().c_str(), t.dtype.c_str(),
                Shape(t.shape).c_str(), static_cast<long long>(t.numel() * 4), t.slices.size());
  }
  return 0;
}

int CkptReshard(const CkptReshardArgs& args) {
  auto dir = ck::Reshard(Disk(), args.src, args.dst, args.world);
  if (!dir.ok()) {
    std::fprintf(stderr, "vigil ckpt reshard: %s\n", dir.status().message().c_str());
    return dir.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::printf("%s: written for %d ranks, committed\n", dir.value().c_str(), args.world);
  return 0;
}

}  // namespace vigil::cli
