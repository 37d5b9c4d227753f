#include "checkpoint/reshard.h"

#include <algorithm>

#include "checkpoint/layout.h"

namespace vigil::checkpoint {

Result<std::string> Reshard(Storage* storage, const std::string& src, const std::string& dst_root,
                            int world) {
  if (world <= 0) return Status::InvalidArgument("world size must be positive");
  auto reader = CheckpointReader::Open(storage, src);
  if (!reader.ok()) return reader.status();
  const Manifest& from = reader.value()->manifest();
  if (from.layout.experts > 0 && from.layout.expert_placement == "expert_parallel" &&
      !ExpertsSharded(from.layout, world) && world > 1) {
    return Status::InvalidArgument("the job places its " + std::to_string(from.layout.experts) +
                                   " experts expert_parallel, which " + std::to_string(world) +
                                   " ranks cannot divide");
  }
  // The model's tensors, from the first section's entries.
  std::vector<TensorInfo> tensors;
  for (const auto& t : from.tensors)
    if (t.section == from.sections[0]) tensors.push_back({t.name, t.shape, t.offset});
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.offset < b.offset; });

  Manifest to = from;
  to.world_size = world;
  const int sections = static_cast<int>(from.sections.size());
  const std::string tmp = dst_root + "/" + StepDirName(from.step) + ".tmp";
  VIGIL_RETURN_IF_ERROR(storage->CreateDirs(dst_root));
  std::vector<ShardReport> reports(static_cast<size_t>(world));
  // One slice (at most one tensor) in memory at a time, in a buffer reused
  // from slice to slice and shard to shard.
  std::vector<float> scratch;
  for (int r = 0; r < world; ++r) {
    reports[r].ranges = OwnedRanges(from.layout, r, world);
    const auto plan = PlanShard(tensors, sections, reports[r].ranges);
    auto sums = WriteShard(
        storage, tmp + "/" + ShardFileName(r), plan, [&](size_t i) -> Result<const float*> {
          const PlannedSlice& s = plan[i];
          const int64_t at = tensors[static_cast<size_t>(s.tensor)].offset;
          scratch.resize(std::max(scratch.size(), static_cast<size_t>(s.end - s.begin)));
          VIGIL_RETURN_IF_ERROR(
              reader.value()->Read(s.section, at + s.begin, at + s.end, scratch.data()));
          return scratch.data();
        });
    if (!sums.ok()) return sums.status();
    reports[r].checksums = std::move(sums.value());
  }
  VIGIL_RETURN_IF_ERROR(DescribeShards(&to, tensors, reports));
  return CommitCheckpoint(storage, dst_root, to);
}

}  // namespace vigil::checkpoint
