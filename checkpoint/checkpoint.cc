#include "checkpoint/checkpoint.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace vigil::checkpoint {

namespace fs = std::filesystem;

std::string StepDirName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step-%08lld", static_cast<long long>(step));
  return buf;
}

std::string ShardFileName(int rank) { return "shard-" + std::to_string(rank) + ".bin"; }

int64_t StepOfDirName(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step-") != 0) return -1;
  const std::string digits = name.substr(5);
  if (digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

std::vector<PlannedSlice> PlanShard(const std::vector<TensorInfo>& tensors, int sections,
                                    const std::vector<IndexRange>& ranges) {
  std::vector<PlannedSlice> out;
  int64_t file_offset = 0;
  for (int sec = 0; sec < sections; ++sec) {
    for (const auto& r : ranges) {
      // The first tensor that ends past r.begin, then every one that starts before r.end.
      auto it =
          std::upper_bound(tensors.begin(), tensors.end(), r.begin,
                           [](int64_t v, const TensorInfo& t) { return v < t.offset + t.numel(); });
      for (; it != tensors.end() && it->offset < r.end; ++it) {
        const int64_t b = std::max(r.begin, it->offset) - it->offset;
        const int64_t e = std::min(r.end, it->offset + it->numel()) - it->offset;
        out.push_back({sec, static_cast<int>(it - tensors.begin()), b, e, file_offset});
        file_offset += (e - b) * static_cast<int64_t>(sizeof(float));
      }
    }
  }
  return out;
}

Result<std::vector<uint64_t>> WriteShard(Storage* storage, const std::string& path,
                                         const std::vector<PlannedSlice>& plan,
                                         const SliceSource& source) {
  VIGIL_RETURN_IF_ERROR(storage->CreateDirs(fs::path(path).parent_path().string()));
  auto file = storage->NewWritableFile(path);
  if (!file.ok()) return file.status();
  WritableFile& out = *file.value();
  std::vector<uint64_t> sums;
  sums.reserve(plan.size());
  Status st;
  for (size_t i = 0; i < plan.size() && st.ok(); ++i) {
    auto data = source(i);
    if (!data.ok()) {
      st = data.status();
      break;
    }
    const size_t bytes = static_cast<size_t>(plan[i].end - plan[i].begin) * sizeof(float);
    sums.push_back(XXH3_64bits(data.value(), bytes));
    st = out.Append(data.value(), bytes);
  }
  if (st.ok()) st = out.Sync();
  if (st.ok()) st = out.Close();
  if (!st.ok()) return st;
  return sums;
}

Result<std::vector<uint64_t>> WriteShard(Storage* storage, const std::string& path,
                                         const std::vector<PlannedSlice>& plan,
                                         const std::vector<ShardPiece>& pieces) {
  int64_t planned = 0, given = 0;
  for (const auto& s : plan) planned += s.end - s.begin;
  for (const auto& p : pieces) given += p.count;
  if (planned != given) {
    return Status::InvalidArgument(path + ": pieces hold " + std::to_string(given) +
                                   " floats, the plan " + std::to_string(planned));
  }
  // The plan cuts each piece (one section over one range) at tensor
  // boundaries, so every slice lies inside one piece.
  std::vector<const float*> at(plan.size());
  size_t piece = 0;
  int64_t used = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    while (piece < pieces.size() && pieces[piece].count == used) {
      ++piece;
      used = 0;
    }
    const int64_t n = plan[i].end - plan[i].begin;
    if (piece == pieces.size() || used + n > pieces[piece].count)
      return Status::InvalidArgument(path + ": slice " + std::to_string(i) + " spans two pieces");
    at[i] = pieces[piece].data + used;
    used += n;
  }
  return WriteShard(storage, path, plan, [&](size_t i) -> Result<const float*> { return at[i]; });
}

Status DescribeShards(Manifest* m, const std::vector<TensorInfo>& tensors,
                      const std::vector<ShardReport>& shards) {
  const int sections = static_cast<int>(m->sections.size());
  m->shards.clear();
  m->tensors.clear();
  for (int sec = 0; sec < sections; ++sec) {
    for (const auto& t : tensors)
      m->tensors.push_back({m->sections[sec], t.name, "f32", t.shape, t.offset, {}});
  }
  for (size_t r = 0; r < shards.size(); ++r) {
    const auto plan = PlanShard(tensors, sections, shards[r].ranges);
    if (plan.size() != shards[r].checksums.size()) {
      return Status::Internal("shard " + std::to_string(r) + " reports " +
                              std::to_string(shards[r].checksums.size()) + " checksums for " +
                              std::to_string(plan.size()) + " slices");
    }
    int64_t bytes = 0;
    for (size_t i = 0; i < plan.size(); ++i) {
      const auto& p = plan[i];
      const int64_t length = (p.end - p.begin) * static_cast<int64_t>(sizeof(float));
      m->tensors[static_cast<size_t>(p.section) * tensors.size() + p.tensor].slices.push_back(
          {p.begin, p.end, static_cast<int>(r), p.file_offset, length, shards[r].checksums[i]});
      bytes += length;
    }
    m->shards.push_back({static_cast<int>(r), ShardFileName(static_cast<int>(r)), bytes});
  }
  return Status::Ok();
}

Result<std::string> CommitCheckpoint(Storage* storage, const std::string& root,
                                     const Manifest& manifest) {
  const std::string final_dir = root + "/" + StepDirName(manifest.step);
  const std::string tmp_dir = final_dir + ".tmp";
  VIGIL_RETURN_IF_ERROR(WriteFileDurably(storage, tmp_dir + "/manifest.json", manifest.ToJson()));
  // WriteFileDurably synced tmp_dir, which also makes the shards' entries durable.
  if (storage->Exists(final_dir)) {
    // A save of a step saved before (a rollback replays it): the old copy
    // goes only once the new one is complete.
    VIGIL_RETURN_IF_ERROR(storage->RemoveAll(final_dir));
  }
  VIGIL_RETURN_IF_ERROR(storage->Rename(tmp_dir, final_dir));
  VIGIL_RETURN_IF_ERROR(storage->SyncDir(root));
  return final_dir;
}

CheckpointReader::CheckpointReader(Storage* storage, std::string dir, Manifest m)
    : storage_(storage), dir_(std::move(dir)), manifest_(std::move(m)) {
  by_section_.resize(manifest_.sections.size());
  for (const auto& t : manifest_.tensors)
    by_section_[static_cast<size_t>(manifest_.FindSection(t.section))].push_back(&t);
  for (auto& v : by_section_)
    std::sort(v.begin(), v.end(),
              [](const TensorEntry* a, const TensorEntry* b) { return a->offset < b->offset; });
}

Result<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(Storage* storage,
                                                                 const std::string& dir) {
  if (dir.size() >= 4 && dir.compare(dir.size() - 4, 4, ".tmp") == 0)
    return Status::Corruption(dir + ": an uncommitted checkpoint");
  auto text = storage->ReadWholeFile(dir + "/manifest.json");
  if (!text.ok()) return Status::Corruption(dir + ": manifest.json is missing or unreadable");
  auto manifest = Manifest::FromJson(text.value(), dir + "/manifest.json");
  if (!manifest.ok()) return manifest.status();
  // Every size is checked before anything is allocated or read.
  for (const auto& s : manifest->shards) {
    auto size = storage->FileSize(dir + "/" + s.file);
    if (!size.ok()) return Status::Corruption(dir + ": shard " + s.file + " is missing");
    if (size.value() != static_cast<uint64_t>(s.bytes)) {
      return Status::Corruption(dir + ": shard " + s.file + " has " + std::to_string(size.value()) +
                                " bytes, the manifest says " + std::to_string(s.bytes));
    }
  }
  return std::unique_ptr<CheckpointReader>(
      new CheckpointReader(storage, dir, std::move(manifest.value())));
}

Result<const ReadableFile*> CheckpointReader::Shard(int shard) {
  auto it = files_.find(shard);
  if (it != files_.end()) return it->second.get();
  const std::string& name = manifest_.shards[static_cast<size_t>(shard)].file;
  auto file = storage_->OpenReadable(dir_ + "/" + name);
  if (!file.ok())
    return Status::Corruption(dir_ + ": shard " + name + ": " + file.status().message());
  return (files_[shard] = std::move(file.value())).get();
}

Status CheckpointReader::ReadSlice(const TensorEntry& t, const SliceEntry& s, float* dst) {
  auto file = Shard(s.shard);
  if (!file.ok()) return file.status();
  const std::string& name = manifest_.shards[static_cast<size_t>(s.shard)].file;
  Status st = file.value()->ReadAt(static_cast<uint64_t>(s.file_offset),
                                   static_cast<size_t>(s.length), dst);
  if (!st.ok()) return Status::Corruption(dir_ + ": shard " + name + ": " + st.message());
  bytes_read_ += s.length;
  if (XXH3_64bits(dst, static_cast<size_t>(s.length)) != s.xxh3) {
    return Status::Corruption(dir_ + ": shard " + name + ", tensor " + t.full_name() +
                              " elements [" + std::to_string(s.begin) + ", " +
                              std::to_string(s.end) + ") fail their checksum");
  }
  return Status::Ok();
}

Status CheckpointReader::Read(int section, int64_t begin, int64_t end, float* dst) {
  if (section < 0 || section >= static_cast<int>(by_section_.size()) || begin < 0 ||
      end > manifest_.param_count || begin > end) {
    return Status::InvalidArgument(dir_ + ": no section " + std::to_string(section) + " range [" +
                                   std::to_string(begin) + ", " + std::to_string(end) + ")");
  }
  const auto& tensors = by_section_[static_cast<size_t>(section)];
  auto it =
      std::upper_bound(tensors.begin(), tensors.end(), begin,
                       [](int64_t v, const TensorEntry* t) { return v < t->offset + t->numel(); });
  for (; it != tensors.end() && (*it)->offset < end; ++it) {
    const TensorEntry& t = **it;
    for (const auto& s : t.slices) {
      const int64_t gb = t.offset + s.begin, ge = t.offset + s.end;
      const int64_t lo = std::max(gb, begin), hi = std::min(ge, end);
      if (lo >= hi) continue;
      if (lo == gb && hi == ge) {  // wholly wanted: straight into place
        VIGIL_RETURN_IF_ERROR(ReadSlice(t, s, dst + (gb - begin)));
        continue;
      }
      bounce_.resize(static_cast<size_t>(s.end - s.begin));
      VIGIL_RETURN_IF_ERROR(ReadSlice(t, s, bounce_.data()));
      std::memcpy(dst + (lo - begin), bounce_.data() + (lo - gb),
                  static_cast<size_t>(hi - lo) * sizeof(float));
    }
  }
  return Status::Ok();
}

Result<std::vector<float>> CheckpointReader::ReadSection(const std::string& name) {
  const int sec = manifest_.FindSection(name);
  if (sec < 0) return Status::NotFound(dir_ + " has no section " + name);
  std::vector<float> out(static_cast<size_t>(manifest_.param_count));
  VIGIL_RETURN_IF_ERROR(Read(sec, 0, manifest_.param_count, out.data()));
  return out;
}

Status CheckpointReader::VerifyAll() {
  for (const auto& t : manifest_.tensors) {
    for (const auto& s : t.slices) {
      bounce_.resize(static_cast<size_t>(s.end - s.begin));
      VIGIL_RETURN_IF_ERROR(ReadSlice(t, s, bounce_.data()));
    }
  }
  return Status::Ok();
}

Status VerifyCheckpoint(Storage* storage, const std::string& dir) {
  auto reader = CheckpointReader::Open(storage, dir);
  if (!reader.ok()) return reader.status();
  return reader.value()->VerifyAll();
}

Result<std::vector<std::string>> ListCommitted(Storage* storage, const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!storage->Exists(root)) return std::vector<std::string>();
  auto names = storage->ListDir(root);
  if (!names.ok()) return names.status();
  for (const auto& name : names.value()) {
    const int64_t step = StepOfDirName(name);
    if (step >= 0 && storage->Exists(root + "/" + name + "/manifest.json"))
      found.push_back({step, root + "/" + name});
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

Status RemoveIncomplete(Storage* storage, const std::string& root) {
  if (!storage->Exists(root)) return Status::Ok();
  auto names = storage->ListDir(root);
  if (!names.ok()) return names.status();
  for (const auto& name : names.value()) {
    if (name.rfind("step-", 0) == 0 && name.size() > 4 &&
        name.compare(name.size() - 4, 4, ".tmp") == 0) {
      VIGIL_RETURN_IF_ERROR(storage->RemoveAll(root + "/" + name));
    }
  }
  return Status::Ok();
}

}  // namespace vigil::checkpoint
