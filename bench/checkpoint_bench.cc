// Durable checkpoint throughput beside the disk's own, measured in the same
// run on the same filesystem: a sharded save (every shard written and
// fsynced, the manifest, the directory fsyncs and the rename) against one
// plain sequential write + fdatasync of the same bytes; and the verified
// load (sizes, xxHash3 of every shard) against a plain read.
//
//   build/bin/checkpoint_bench [--dir DIR] [--mib N] [--shards S] [--reps R]
//
// Prints best-of-R figures in GB/s. Reads follow writes, so they are served
// from the page cache unless the state is larger than memory: the load
// figures measure checksumming, copying and faulting in the loaded state's
// fresh memory (the plain read reuses a buffer already touched), not the
// disk. On this project's VMs first-touch page faults dominate the load.
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

#include "checkpoint/checkpoint.h"
#include "common/partition.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace ck = vigil::checkpoint;

const char* Arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return argv[i + 1];
  return fallback;
}

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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

// One checkpoint of `state` (one section) cut into `shards` balanced ranges,
// written the way the ranks write theirs, then committed.
bool Save(const std::string& root, int64_t step, const std::vector<float>& state, int shards) {
  ck::Manifest m;
  m.step = step;
  m.optimizer = "sgd";
  m.config_hash = "bench";
  m.world_size = shards;
  m.param_count = static_cast<int64_t>(state.size());
  m.sections = {"params"};
  m.tensors = {{"state", {m.param_count}, 0}};
  const std::string tmp = root + "/" + ck::StepDirName(step) + ".tmp";
  const auto off = vigil::BalancedOffsets(m.param_count, shards);
  for (int r = 0; r < shards; ++r) {
    const ck::IndexRange range{off[r], off[r + 1]};
    auto shard = ck::WriteShard(tmp, r, 1, {range}, {{state.data() + range.begin, range.size()}});
    if (!shard.ok()) {
      std::fprintf(stderr, "%s\n", shard.status().ToString().c_str());
      return false;
    }
    m.shards.push_back(shard.value());
  }
  auto dir = ck::CommitCheckpoint(root, m);
  if (!dir.ok()) std::fprintf(stderr, "%s\n", dir.status().ToString().c_str());
  return dir.ok();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string base = Arg(argc, argv, "--dir", "/tmp");
  const int64_t mib = std::atoll(Arg(argc, argv, "--mib", "1024"));
  const int shards = std::atoi(Arg(argc, argv, "--shards", "4"));
  const int reps = std::atoi(Arg(argc, argv, "--reps", "3"));
  const std::string root = base + "/vigil-ckpt-bench-" + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  std::vector<float> state(static_cast<size_t>(mib) << 18), back(state.size());
  for (size_t i = 0; i < state.size(); ++i) state[i] = static_cast<float>(i % 1000003) * 0.5f;
  const double gb = static_cast<double>(state.size() * sizeof(float)) / 1e9;
  std::printf("state %.2f GB in %d shards under %s, best of %d\n", gb, shards, root.c_str(), reps);

  double plain_w = 1e30, save = 1e30, plain_r = 1e30, load = 1e30;
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
    t0 = Clock::now();
    auto loaded = ck::LoadCheckpoint(root + "/" + ck::StepDirName(r + 1));
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    load = std::min(load, Since(t0));
    if (loaded->state != state) {
      std::fprintf(stderr, "loaded state differs from the saved one\n");
      return 1;
    }
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
  return 0;
}
