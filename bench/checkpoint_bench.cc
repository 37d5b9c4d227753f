// Durable checkpoint throughput beside the disk's own, measured in the same
// run on the same filesystem: a sharded save (every shard written and
// fsynced, the manifest, the directory fsyncs and the rename) against one
// plain sequential write + fdatasync of the same bytes; and the verified
// load (sizes, xxHash3 of every slice) against a plain read,
//
//   build/bin/checkpoint_bench [--dir DIR] [--mib N] [--shards S] [--reps R]
//
// and the offline reshard to half as many shards.
//
// Prints best-of-R figures in GB/s. Reads follow writes, so they are served
// from the page cache unless the state is larger than memory: the load
// figures measure checksumming and copying into memory already touched (as
// a trainer's parameters are), not the disk.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "checkpoint/checkpoint.h"
#include "checkpoint/layout.h"
#include "checkpoint/reshard.h"
#include "common/partition.h"

namespace {

using vigil::bench::Arg;
using vigil::bench::Clock;
using vigil::bench::Since;
namespace ck = vigil::checkpoint;

bool PlainWrite(const std::string& path, const std::vector<float>& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  const char* p = reinterpret_cast<const char*>(data.data());
  size_t left = data.size() * sizeof(float);
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n <= 0) {
      ::close(fd);
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  const bool ok = ::fdatasync(fd) == 0;
  ::close(fd);
  return ok;
}

bool PlainRead(const std::string& path, std::vector<float>* data) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char* p = reinterpret_cast<char*>(data->data());
  size_t left = data->size() * sizeof(float);
  while (left > 0) {
    const ssize_t n = ::read(fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  ::close(fd);
  return left == 0;
}

// The state cut into 64 tensors, as a model's would be.
std::vector<ck::TensorInfo> Tensors(int64_t n) {
  std::vector<ck::TensorInfo> out;
  const auto off = vigil::BalancedOffsets(n, 64);
  for (int t = 0; t < 64; ++t)
    out.push_back({"t" + std::to_string(t), {off[t + 1] - off[t]}, off[t]});
  return out;
}

// One checkpoint of `state` (one section) in `shards` shards, written the way
// the ranks write theirs, then committed.
bool Save(const std::string& root, int64_t step, const std::vector<float>& state, int shards) {
  ck::Manifest m;
  m.step = step;
  m.optimizer = "sgd";
  m.config_hash = "bench";
  m.world_size = shards;
  m.param_count = static_cast<int64_t>(state.size());
  m.layout.dense_params = m.param_count;
  m.sections = {"params"};
  const auto tensors = Tensors(m.param_count);
  std::vector<ck::ShardReport> reports(shards);
  const std::string tmp = root + "/" + ck::StepDirName(step) + ".tmp";
  for (int r = 0; r < shards; ++r) {
    reports[r].ranges = ck::OwnedRanges(m.layout, r, shards);
    std::vector<ck::ShardPiece> pieces;
    for (const auto& range : reports[r].ranges)
      pieces.push_back({state.data() + range.begin, range.size()});
    auto sums = ck::WriteShard(ck::Storage::Default(), tmp + "/" + ck::ShardFileName(r),
                               ck::PlanShard(tensors, 1, reports[r].ranges), pieces);
    if (!sums.ok()) {
      std::fprintf(stderr, "%s\n", sums.status().ToString().c_str());
      return false;
    }
    reports[r].checksums = sums.value();
  }
  vigil::Status st = ck::DescribeShards(&m, tensors, reports);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return false;
  }
  auto dir = ck::CommitCheckpoint(ck::Storage::Default(), root, m);
  if (!dir.ok()) std::fprintf(stderr, "%s\n", dir.status().ToString().c_str());
  return dir.ok();
}

// Reads a whole checkpoint into `out` (memory already touched, as a
// trainer's parameters are), verifying every slice.
bool Load(const std::string& dir, std::vector<float>* out) {
  auto reader = ck::CheckpointReader::Open(ck::Storage::Default(), dir);
  vigil::Status st =
      reader.ok() ? reader.value()->Read(0, 0, static_cast<int64_t>(out->size()), out->data())
                  : reader.status();
  if (!st.ok()) std::fprintf(stderr, "%s\n", st.ToString().c_str());
  return st.ok();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string base = Arg(argc, argv, "--dir", "/tmp");
  const int64_t mib = std::atoll(Arg(argc, argv, "--mib", "1024"));
  const int shards = std::atoi(Arg(argc, argv, "--shards", "4"));
  const int reps = std::atoi(Arg(argc, argv, "--reps", "3"));
  const std::string root = base + "/vigil-ckpt-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  std::vector<float> state(static_cast<size_t>(mib) << 18), back(state.size()),
      loaded(state.size());
  for (size_t i = 0; i < state.size(); ++i) state[i] = static_cast<float>(i % 1000003) * 0.5f;
  const double gb = static_cast<double>(state.size() * sizeof(float)) / 1e9;
  std::printf("state %.2f GB in %d shards under %s, best of %d\n", gb, shards, root.c_str(), reps);

  double plain_w = 1e30, save = 1e30, plain_r = 1e30, load = 1e30, reshard = 1e30;
  for (int r = 0; r < reps; ++r) {
    // Alternate the two writers so a filesystem that speeds up or slows down shows in both.
    auto t0 = Clock::now();
    if (!PlainWrite(root + "/plain.bin", state)) return 1;
    plain_w = std::min(plain_w, Since(t0));
    t0 = Clock::now();
    if (!Save(root, r + 1, state, shards)) return 1;
    save = std::min(save, Since(t0));
    t0 = Clock::now();
    if (!PlainRead(root + "/plain.bin", &back)) return 1;
    plain_r = std::min(plain_r, Since(t0));
    std::fill(loaded.begin(), loaded.end(), 0.0f);
    t0 = Clock::now();
    if (!Load(root + "/" + ck::StepDirName(r + 1), &loaded)) return 1;
    load = std::min(load, Since(t0));
    if (loaded != state) {
      std::fprintf(stderr, "loaded state differs from the saved one\n");
      return 1;
    }
    // Reshard to half as many shards (or to 2 from 1): every slice read and
    // verified, every new shard written and synced, committed.
    t0 = Clock::now();
    auto moved = ck::Reshard(ck::Storage::Default(), root + "/" + ck::StepDirName(r + 1),
                             root + "/resharded", shards > 1 ? shards / 2 : 2);
    if (!moved.ok()) {
      std::fprintf(stderr, "%s\n", moved.status().ToString().c_str());
      return 1;
    }
    reshard = std::min(reshard, Since(t0));
    std::filesystem::remove_all(root + "/resharded");
    std::filesystem::remove(root + "/plain.bin");
    std::filesystem::remove_all(root + "/" + ck::StepDirName(r + 1));
  }
  std::filesystem::remove_all(root);
  std::printf(
      "durable save  %6.2f GB/s   plain write+fdatasync %6.2f GB/s   ratio %5.1f%% "
      "(target >= 90%%)\n",
      gb / save, gb / plain_w, 100.0 * plain_w / save);
  std::printf("verified load %6.2f GB/s   plain read            %6.2f GB/s   ratio %5.1f%%\n",
              gb / load, gb / plain_r, 100.0 * plain_r / load);
  std::printf("reshard %d -> %d shards: %.2f s (%.2f GB/s read, verified, written, synced)\n",
              shards, shards > 1 ? shards / 2 : 2, reshard, gb / reshard);
  return 0;
}
