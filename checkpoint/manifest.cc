#include "checkpoint/manifest.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

namespace vigil::checkpoint {

using nlohmann::json;

namespace {

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d <= 0 || n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

bool PlainFileName(const std::string& f) {
  return !f.empty() && f.find('/') == std::string::npos && f != "." && f != ".." &&
         f.find('\0') == std::string::npos;
}

}  // namespace

int64_t TensorInfo::numel() const { return Numel(shape); }
int64_t TensorEntry::numel() const { return Numel(shape); }

std::string Hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, v);
  return buf;
}

int Manifest::FindSection(const std::string& name) const {
  for (size_t i = 0; i < sections.size(); ++i)
    if (sections[i] == name) return static_cast<int>(i);
  return -1;
}

int64_t Manifest::total_bytes() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.bytes;
  return n;
}

std::string Manifest::ToJson() const {
  json j;
  j["format_version"] = format_version;
  j["step"] = step;
  j["tokens_seen"] = tokens_seen;
  j["data_loader"] = {{"seed", data_loader.seed},
                      {"next_sample", data_loader.next_sample},
                      {"samples_per_step", data_loader.samples_per_step}};
  j["rng"] = {{"generator", rng}, {"seed", rng_seed}};
  j["optimizer"] = optimizer;
  j["optimizer_step"] = optimizer_step;
  j["lr_scale"] = lr_scale;
  j["config_hash"] = config_hash;
  const json config = json::parse(config_json, nullptr, false);
  j["config"] = config.is_discarded() ? json::object() : config;
  j["world_size"] = world_size;
  j["layout"] = {{"dense_params", layout.dense_params},
                 {"experts", layout.experts},
                 {"params_per_expert", layout.params_per_expert},
                 {"expert_placement", layout.expert_placement},
                 {"device", layout.device}};
  j["param_count"] = param_count;
  j["sections"] = sections;
  j["shards"] = json::array();
  for (const auto& s : shards)
    j["shards"].push_back({{"rank", s.rank}, {"file", s.file}, {"bytes", s.bytes}});
  j["tensors"] = json::array();
  for (const auto& t : tensors) {
    json slices = json::array();
    for (const auto& s : t.slices) {
      slices.push_back({{"begin", s.begin},
                        {"end", s.end},
                        {"file", shards.at(static_cast<size_t>(s.shard)).file},
                        {"offset", s.file_offset},
                        {"length", s.length},
                        {"xxh3", Hex64(s.xxh3)}});
    }
    j["tensors"].push_back({{"section", t.section},
                            {"name", t.name},
                            {"dtype", t.dtype},
                            {"shape", t.shape},
                            {"offset", t.offset},
                            {"slices", slices}});
  }
  return j.dump(1) + "\n";
}

Result<Manifest> Manifest::FromJson(const std::string& text, const std::string& source) {
  Manifest m;
  auto bad = [&](const std::string& what) { return Status::Corruption(source + ": " + what); };
  try {
    const json j = json::parse(text);
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != kFormatVersion)
      return bad("unknown format_version " + std::to_string(m.format_version));
    m.step = j.at("step").get<int64_t>();
    m.tokens_seen = j.at("tokens_seen").get<int64_t>();
    const auto& dl = j.at("data_loader");
    m.data_loader.seed = dl.at("seed").get<uint64_t>();
    m.data_loader.next_sample = dl.at("next_sample").get<int64_t>();
    m.data_loader.samples_per_step = dl.at("samples_per_step").get<int64_t>();
    m.rng = j.at("rng").at("generator").get<std::string>();
    m.rng_seed = j.at("rng").at("seed").get<uint64_t>();
    m.optimizer = j.at("optimizer").get<std::string>();
    m.optimizer_step = j.at("optimizer_step").get<int64_t>();
    m.lr_scale = j.at("lr_scale").get<double>();
    m.config_hash = j.at("config_hash").get<std::string>();
    m.config_json = j.at("config").dump();
    m.world_size = j.at("world_size").get<int>();
    const auto& l = j.at("layout");
    m.layout.dense_params = l.at("dense_params").get<int64_t>();
    m.layout.experts = l.at("experts").get<int>();
    m.layout.params_per_expert = l.at("params_per_expert").get<int64_t>();
    m.layout.expert_placement = l.at("expert_placement").get<std::string>();
    m.layout.device = l.at("device").get<std::string>();
    m.param_count = j.at("param_count").get<int64_t>();
    m.sections = j.at("sections").get<std::vector<std::string>>();
    for (const auto& s : j.at("shards"))
      m.shards.push_back(
          {s.at("rank").get<int>(), s.at("file").get<std::string>(), s.at("bytes").get<int64_t>()});
    for (const auto& t : j.at("tensors")) {
      TensorEntry e;
      e.section = t.at("section").get<std::string>();
      e.name = t.at("name").get<std::string>();
      e.dtype = t.at("dtype").get<std::string>();
      e.shape = t.at("shape").get<std::vector<int64_t>>();
      e.offset = t.at("offset").get<int64_t>();
      for (const auto& s : t.at("slices")) {
        SliceEntry se;
        se.begin = s.at("begin").get<int64_t>();
        se.end = s.at("end").get<int64_t>();
        const std::string file = s.at("file").get<std::string>();
        se.shard = -1;
        for (size_t i = 0; i < m.shards.size(); ++i)
          if (m.shards[i].file == file) se.shard = static_cast<int>(i);
        if (se.shard < 0)
          return bad("tensor " + e.full_name() + " names file '" + file + "', not a shard");
        se.file_offset = s.at("offset").get<int64_t>();
        se.length = s.at("length").get<int64_t>();
        const std::string hex = s.at("xxh3").get<std::string>();
        if (hex.size() != 16 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
          return bad("tensor " + e.full_name() + " has a malformed checksum '" + hex + "'");
        se.xxh3 = std::stoull(hex, nullptr, 16);
        e.slices.push_back(se);
      }
      m.tensors.push_back(std::move(e));
    }
  } catch (const std::exception& e) {
    return bad(std::string("bad manifest: ") + e.what());
  }

  // Every count is bounded before any arithmetic: a garbled manifest must
  // neither overflow nor make the loader reserve absurd amounts.
  constexpr int64_t kMaxParams = int64_t{1} << 50;
  const auto in = [](int64_t v, int64_t hi) { return v >= 0 && v <= hi; };
  if (m.step < 0 || m.tokens_seen < 0 || !in(m.param_count, kMaxParams) || m.param_count == 0 ||
      m.world_size <= 0 || m.world_size > (1 << 24) || m.optimizer_step < 0 || !(m.lr_scale > 0) ||
      m.data_loader.next_sample < 0 || m.data_loader.samples_per_step < 0 ||
      !in(m.layout.dense_params, kMaxParams) || !in(m.layout.experts, 1 << 20) ||
      !in(m.layout.params_per_expert, kMaxParams) ||
      (m.layout.experts > 0 && m.layout.params_per_expert > kMaxParams / m.layout.experts) ||
      m.layout.dense_params + m.layout.experts * m.layout.params_per_expert != m.param_count) {
    return bad("manifest fields out of range");
  }
  if (m.sections.empty() ||
      std::set<std::string>(m.sections.begin(), m.sections.end()).size() != m.sections.size()) {
    return bad("sections are missing or repeated");
  }
  if (static_cast<int>(m.shards.size()) != m.world_size)
    return bad("lists " + std::to_string(m.shards.size()) + " shards for world size " +
               std::to_string(m.world_size));
  std::set<std::string> files;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const auto& s = m.shards[i];
    if (!PlainFileName(s.file))
      return bad("shard file '" + s.file + "' is not a plain file name inside the checkpoint");
    if (s.rank != static_cast<int>(i))
      return bad("shard " + std::to_string(i) + " is out of order");
    if (s.bytes < 0 || !files.insert(s.file).second)
      return bad("shard " + s.file + " is listed twice or has a negative size");
  }

  // Tensors tile each section; slices tile each tensor; slices tile each file.
  std::vector<std::vector<std::pair<int64_t, int64_t>>> file_regions(m.shards.size());
  std::vector<std::vector<std::pair<int64_t, int64_t>>> section_spans(m.sections.size());
  for (const auto& t : m.tensors) {
    const int sec = m.FindSection(t.section);
    if (sec < 0) return bad("tensor " + t.full_name() + " is in no listed section");
    if (t.dtype != "f32") return bad("tensor " + t.full_name() + " has dtype " + t.dtype);
    const int64_t n = t.numel();
    if (n <= 0 || t.offset < 0 || t.offset > m.param_count - n)
      return bad("tensor " + t.full_name() + " lies outside the parameters");
    section_spans[static_cast<size_t>(sec)].push_back({t.offset, t.offset + n});
    std::vector<std::pair<int64_t, int64_t>> spans;
    for (const auto& s : t.slices) {
      if (s.begin < 0 || s.end <= s.begin || s.end > n || s.file_offset < 0 ||
          s.length != (s.end - s.begin) * 4 ||
          s.file_offset > m.shards[static_cast<size_t>(s.shard)].bytes - s.length) {
        return bad("tensor " + t.full_name() + " has a slice outside the tensor or its file");
      }
      spans.push_back({s.begin, s.end});
      file_regions[static_cast<size_t>(s.shard)].push_back(
          {s.file_offset, s.file_offset + s.length});
    }
    std::sort(spans.begin(), spans.end());
    int64_t next = 0;
    for (const auto& [b, e] : spans) {
      if (b != next) return bad("the slices of tensor " + t.full_name() + " overlap or leave gaps");
      next = e;
    }
    if (next != n) return bad("the slices of tensor " + t.full_name() + " do not cover it");
  }
  for (size_t sec = 0; sec < m.sections.size(); ++sec) {
    auto& spans = section_spans[sec];
    std::sort(spans.begin(), spans.end());
    int64_t next = 0;
    for (const auto& [b, e] : spans) {
      if (b != next) return bad("the tensors of " + m.sections[sec] + " overlap or leave gaps");
      next = e;
    }
    if (next != m.param_count) return bad("the tensors of " + m.sections[sec] + " do not cover it");
  }
  for (size_t f = 0; f < m.shards.size(); ++f) {
    auto& regions = file_regions[f];
    std::sort(regions.begin(), regions.end());
    int64_t next = 0;
    for (const auto& [b, e] : regions) {
      if (b != next) return bad("the slices in " + m.shards[f].file + " overlap or leave gaps");
      next = e;
    }
    if (next != m.shards[f].bytes)
      return bad("the slices in " + m.shards[f].file + " do not fill it");
  }
  return m;
}

}  // namespace vigil::checkpoint
