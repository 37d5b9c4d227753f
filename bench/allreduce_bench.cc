// Allreduce bus bandwidth over Gloo TCP on loopback, beside memcpy of the
// same bytes measured in the same run.
//
//   build/bin/allreduce_bench [--ranks W] [--max-mib M] [--reps R]
//
// W ranks are separate processes (fork) that rendezvous through a
// gloo::rendezvous::FileStore in a temporary directory, then allreduce float
// buffers from 256 KiB up to M MiB with vigil's ring (reduce-scatter +
// allgather, what the trainer uses) and with Gloo's own ring allreduce.
// Bus bandwidth = bytes * 2 (W - 1) / W / seconds (the NCCL convention):
// what each rank's link carries. Rank 0 prints best-of-R figures.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <gloo/allreduce.h>
#include <gloo/math.h>
#include <gloo/rendezvous/file_store.h>

#include "worker/trainer/collectives.h"

namespace {

using Clock = std::chrono::steady_clock;

int Arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return std::atoi(argv[i + 1]);
  return fallback;
}

template <typename Fn>
double BestSeconds(int reps, Fn fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

int RunRank(int rank, int world, const std::string& store_dir, int max_mib, int reps) {
  gloo::rendezvous::FileStore store(store_dir);
  auto context =
      vigil::trainer::ConnectTcpMesh(store, rank, world, "127.0.0.1", std::chrono::seconds(60));
  vigil::trainer::GlooCollectives coll(context);
  if (rank == 0) {
    std::printf("%d ranks (processes), loopback TCP; bus bandwidth = bytes * 2(W-1)/W / time\n",
                world);
    std::printf("%10s %14s %14s %14s\n", "bytes", "vigil ring", "gloo ring", "memcpy");
  }
  for (int64_t bytes = 256 << 10; bytes <= (static_cast<int64_t>(max_mib) << 20); bytes *= 4) {
    const int64_t n = bytes / 4;
    std::vector<float> buf(n, 1.0f), copy(n);
    coll.Barrier();
    const double vigil_s = BestSeconds(reps, [&] { coll.AllreduceSum(buf.data(), n); });
    coll.Barrier();
    const double gloo_s = BestSeconds(reps, [&] {
      gloo::AllreduceOptions opts(context);
      opts.setOutput(buf.data(), n);
      opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<float>));
      gloo::allreduce(opts);
    });
    const double memcpy_s = BestSeconds(reps, [&] { std::memcpy(copy.data(), buf.data(), bytes); });
    coll.Barrier();
    if (rank == 0) {
      const double bus = static_cast<double>(bytes) * 2.0 * (world - 1) / world / 1e9;
      std::printf("%10lld %9.2f GB/s %9.2f GB/s %9.2f GB/s\n", static_cast<long long>(bytes),
                  bus / vigil_s, bus / gloo_s, bytes / memcpy_s / 1e9);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int world = Arg(argc, argv, "--ranks", 2), max_mib = Arg(argc, argv, "--max-mib", 64),
            reps = Arg(argc, argv, "--reps", 5);
  char tmpl[] = "/tmp/vigil-allreduce-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  std::vector<pid_t> children;
  for (int r = 1; r < world; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) _exit(RunRank(r, world, dir, max_mib, reps));
    children.push_back(pid);
  }
  int rc = RunRank(0, world, dir, max_mib, reps);
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) rc = 1;
  }
  std::filesystem::remove_all(dir);
  return rc;
}
