#include "checkpoint/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/fs.h"

namespace vigil::checkpoint {

namespace fs = std::filesystem;
using nlohmann::json;

std::string StepDirName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

int64_t ShardEntry::floats_per_section() const {
  int64_t n = 0;
  for (const auto& r : ranges) n += r.size();
  return n;
}

int LoadedCheckpoint::FindSection(const std::string& name) const {
  for (size_t i = 0; i < manifest.sections.size(); ++i)
    if (manifest.sections[i] == name) return static_cast<int>(i);
  return -1;
}

std::string Manifest::ToJson() const {
  json j;
  j["format_version"] = format_version;
  j["step"] = step;
  j["tokens_seen"] = tokens_seen;
  j["data_position"] = data_position;
  j["seed"] = seed;
  j["optimizer"] = optimizer;
  j["optimizer_step"] = optimizer_step;
  j["lr_scale"] = lr_scale;
  j["config_hash"] = config_hash;
  j["world_size"] = world_size;
  j["param_count"] = param_count;
  j["sections"] = sections;
  j["tensors"] = json::array();
  for (const auto& t : tensors)
    j["tensors"].push_back({{"name", t.name}, {"shape", t.shape}, {"offset", t.offset}});
  j["shards"] = json::array();
  for (const auto& s : shards) {
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(s.xxh3));
    json ranges = json::array();
    for (const auto& r : s.ranges) ranges.push_back({r.begin, r.end});
    j["shards"].push_back({{"rank", s.rank}, {"file", s.file}, {"ranges", ranges}, {"xxh3", hex}});
  }
  return j.dump(2) + "\n";
}

Result<Manifest> Manifest::FromJson(const std::string& text, const std::string& source) {
  Manifest m;
  try {
    json j = json::parse(text);
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != Manifest::kFormatVersion) {
      return Status::Corruption(source + ": unknown format_version " +
                                std::to_string(m.format_version));
    }
    m.step = j.at("step").get<int64_t>();
    m.tokens_seen = j.at("tokens_seen").get<int64_t>();
    m.data_position = j.at("data_position").get<int64_t>();
    m.seed = j.at("seed").get<uint64_t>();
    m.optimizer = j.at("optimizer").get<std::string>();
    m.optimizer_step = j.at("optimizer_step").get<int64_t>();
    m.lr_scale = j.at("lr_scale").get<double>();
    m.config_hash = j.at("config_hash").get<std::string>();
    m.world_size = j.at("world_size").get<int>();
    m.param_count = j.at("param_count").get<int64_t>();
    m.sections = j.at("sections").get<std::vector<std::string>>();
    for (const auto& t : j.at("tensors")) {
      m.tensors.push_back({t.at("name").get<std::string>(),
                           t.at("shape").get<std::vector<int64_t>>(),
                           t.at("offset").get<int64_t>()});
    }
    for (const auto& s : j.at("shards")) {
      ShardEntry e;
      e.rank = s.at("rank").get<int>();
      e.file = s.at("file").get<std::string>();
      for (const auto& r : s.at("ranges")) {
        const auto pair = r.get<std::vector<int64_t>>();
        if (pair.size() != 2) throw std::runtime_error("a range is not [begin, end]");
        e.ranges.push_back({pair[0], pair[1]});
      }
      e.xxh3 = std::stoull(s.at("xxh3").get<std::string>(), nullptr, 16);
      m.shards.push_back(e);
    }
  } catch (const std::exception& e) {
    return Status::Corruption(source + ": bad manifest: " + e.what());
  }
  if (m.step < 0 || m.param_count <= 0 || m.sections.empty() || m.world_size <= 0 ||
      m.optimizer_step < 0 || !(m.lr_scale > 0) ||
      static_cast<int>(m.shards.size()) != m.world_size) {
    return Status::Corruption(source + ": manifest fields out of range");
  }
  // Shards are listed in rank order, name files inside this directory, and
  // their ranges together tile [0, param_count) exactly once.
  std::vector<IndexRange> all;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const auto& s = m.shards[i];
    if (s.file.empty() || s.file.find('/') != std::string::npos || s.file == "." ||
        s.file == "..") {
      return Status::Corruption(source + ": shard file '" + s.file + "' is not a plain file name");
    }
    if (s.rank != static_cast<int>(i))
      return Status::Corruption(source + ": shard " + std::to_string(i) + " is out of order");
    for (const auto& r : s.ranges) {
      if (r.begin < 0 || r.end <= r.begin || r.end > m.param_count) {
        return Status::Corruption(source + ": shard " + std::to_string(i) +
                                  " has a range outside the parameters");
      }
      all.push_back(r);
    }
  }
  std::sort(all.begin(), all.end(),
            [](const IndexRange& a, const IndexRange& b) { return a.begin < b.begin; });
  int64_t next = 0;
  for (const auto& r : all) {
    if (r.begin != next) return Status::Corruption(source + ": shard ranges overlap or leave gaps");
    next = r.end;
  }
  if (next != m.param_count)
    return Status::Corruption(source + ": shards do not cover the parameters");
  for (const auto& t : m.tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    if (t.offset < 0 || t.offset + n > m.param_count) {
      return Status::Corruption(source + ": tensor " + t.name + " lies outside the parameters");
    }
  }
  return m;
}

Result<ShardEntry> WriteShard(const std::string& tmp_dir, int rank, int sections,
                              const std::vector<IndexRange>& ranges,
                              const std::vector<ShardPiece>& pieces) {
  ShardEntry e;
  e.rank = rank;
  e.file = "shard-" + std::to_string(rank) + ".bin";
  e.ranges = ranges;
  int64_t piece_floats = 0;
  for (const auto& p : pieces) piece_floats += p.count;
  if (piece_floats != sections * e.floats_per_section()) {
    return Status::InvalidArgument("shard " + std::to_string(rank) + ": pieces hold " +
                                   std::to_string(piece_floats) + " floats, ranges need " +
                                   std::to_string(sections * e.floats_per_section()));
  }
  VIGIL_RETURN_IF_ERROR(MakeDirs(tmp_dir));
  const std::string path = tmp_dir + "/" + e.file;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IoError("open " + path + ": " + std::strerror(errno));
  XXH3_state_t* hash = XXH3_createState();
  XXH3_64bits_reset(hash);
  for (const auto& p : pieces) {
    const char* data = reinterpret_cast<const char*>(p.data);
    const size_t bytes = static_cast<size_t>(p.count) * sizeof(float);
    XXH3_64bits_update(hash, data, bytes);
    size_t off = 0;
    while (off < bytes) {
      ssize_t n = ::write(fd, data + off, bytes - off);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Status st = Status::IoError("write " + path + ": " + std::strerror(errno));
        ::close(fd);
        XXH3_freeState(hash);
        return st;
      }
      off += static_cast<size_t>(n);
    }
  }
  e.xxh3 = XXH3_64bits_digest(hash);
  XXH3_freeState(hash);
  if (::fsync(fd) != 0) {
    Status st = Status::IoError("fsync " + path + ": " + std::strerror(errno));
    ::close(fd);
    return st;
  }
  ::close(fd);
  return e;
}

Result<std::string> CommitCheckpoint(const std::string& root, const Manifest& manifest) {
  const std::string final_dir = root + "/" + StepDirName(manifest.step);
  const std::string tmp_dir = final_dir + ".tmp";
  VIGIL_RETURN_IF_ERROR(WriteFileAtomic(tmp_dir + "/manifest.json", manifest.ToJson()));
  VIGIL_RETURN_IF_ERROR(FsyncPath(tmp_dir));
  std::error_code ec;
  if (fs::exists(final_dir, ec)) fs::remove_all(final_dir, ec);  // a re-save after a rollback
  if (::rename(tmp_dir.c_str(), final_dir.c_str()) != 0) {
    return Status::IoError("rename " + tmp_dir + ": " + std::strerror(errno));
  }
  VIGIL_RETURN_IF_ERROR(FsyncPath(root));
  return final_dir;
}

Result<LoadedCheckpoint> LoadCheckpoint(const std::string& dir) {
  if (dir.size() >= 4 && dir.compare(dir.size() - 4, 4, ".tmp") == 0) {
    return Status::Corruption(dir + ": an uncommitted checkpoint");
  }
  auto text = ReadFile(dir + "/manifest.json");
  if (!text.ok()) return Status::Corruption(dir + ": manifest.json missing");
  auto manifest = Manifest::FromJson(text.value(), dir + "/manifest.json");
  if (!manifest.ok()) return manifest.status();
  LoadedCheckpoint out;
  out.manifest = std::move(manifest.value());
  const int64_t P = out.manifest.param_count;
  const size_t sections = out.manifest.sections.size();
  auto shard_bytes = [&](const ShardEntry& s) {
    return sections * static_cast<size_t>(s.floats_per_section()) * sizeof(float);
  };
  // Every size is checked before anything is allocated: a garbled manifest
  // must not make the loader reserve terabytes.
  for (const auto& s : out.manifest.shards) {
    std::error_code ec;
    const auto have = fs::file_size(dir + "/" + s.file, ec);
    if (ec) return Status::Corruption(dir + ": shard " + s.file + " missing");
    if (have != shard_bytes(s)) {
      return Status::Corruption(dir + ": shard " + s.file + " has " + std::to_string(have) +
                                " bytes, manifest says " + std::to_string(shard_bytes(s)));
    }
  }
  out.state.resize(out.manifest.total_floats());
  for (const auto& s : out.manifest.shards) {
    const std::string path = dir + "/" + s.file;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::IoError("open " + path + ": " + std::strerror(errno));
    // Each run of the file goes straight to its place in the state, hashed
    // on the way; nothing is handed out unless the whole shard verifies.
    XXH3_state_t* hash = XXH3_createState();
    XXH3_64bits_reset(hash);
    Status st;
    for (size_t sec = 0; sec < sections && st.ok(); ++sec) {
      for (const auto& r : s.ranges) {
        char* dst = reinterpret_cast<char*>(out.state.data() + sec * P + r.begin);
        const size_t want = static_cast<size_t>(r.size()) * sizeof(float);
        size_t off = 0;
        while (off < want) {
          const ssize_t n = ::read(fd, dst + off, want - off);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          off += static_cast<size_t>(n);
        }
        if (off < want) {
          st = Status::IoError("read " + path + ": short read");
          break;
        }
        XXH3_64bits_update(hash, dst, want);
      }
    }
    const uint64_t digest = XXH3_64bits_digest(hash);
    XXH3_freeState(hash);
    ::close(fd);
    if (!st.ok()) return st;
    if (digest != s.xxh3) {
      return Status::Corruption(dir + ": shard " + s.file + " fails its checksum");
    }
    out.bytes += static_cast<int64_t>(shard_bytes(s));
  }
  return out;
}

Status VerifyCheckpoint(const std::string& dir) {
  auto loaded = LoadCheckpoint(dir);
  return loaded.ok() ? Status::Ok() : loaded.status();
}

Status RemoveIncomplete(const std::string& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return Status::Ok();
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.size() > 4 &&
        name.compare(name.size() - 4, 4, ".tmp") == 0) {
      fs::remove_all(entry.path(), ec);
      if (ec) return Status::IoError("remove " + entry.path().string() + ": " + ec.message());
    }
  }
  return Status::Ok();
}

}  // namespace vigil::checkpoint
