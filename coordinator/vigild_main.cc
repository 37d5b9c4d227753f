// vigild: the coordinator daemon of one job. Normally started by `vigil run`.
#include <utility>

#include <boost/asio.hpp>
#include <filesystem>

#include <CLI/CLI.hpp>

#include "common/fs.h"
#include "common/util.h"
#include "coordinator/coordinator.h"

int main(int argc, char** argv) {
  using namespace vigil;
  using namespace vigil::coordinator;
  CLI::App app{"vigild: the vigil coordinator for one job"};
  std::string job_file, workdir, token_file;
  std::vector<std::string> chaos_specs;
  CoordinatorOptions options;
  app.add_option("--job", job_file, "job spec (YAML)")->required();
  app.add_option("--workdir", workdir, "work directory (logbook, checkpoints, logs)")->required();
  app.add_option("--token-file", token_file, "auth token file (mode 0600)")->required();
  app.add_option("--listen", options.listen_host, "address for agents and ranks");
  app.add_option("--port", options.listen_port, "port for agents and ranks (0: any)");
  app.add_option("--http-port", options.http_port, "port for /metrics and the API (0: any)");
  app.add_option("--chaos", chaos_specs,
                 "inject a fault (repeatable): KIND:RANK@STEP, corrupt-checkpoint:HOW@STEP, "
                 "random:COUNT");
  uint64_t chaos_seed = 1;
  app.add_option("--chaos-seed", chaos_seed, "seed of a random:COUNT schedule");
  CLI11_PARSE(app, argc, argv);

  auto log = MakeLogger("vigild");
  auto spec = LoadJobSpec(job_file);
  if (!spec.ok()) {
    std::fprintf(stderr, "vigild: %s\n", spec.status().message().c_str());
    return 2;
  }
  auto faults = ParseChaosFaults(chaos_specs, ChaosPlan::Of(spec.value()), chaos_seed);
  if (!faults.ok()) {
    std::fprintf(stderr, "vigild: %s\n", faults.status().message().c_str());
    return 2;
  }
  options.chaos = std::move(faults.value());
  auto token = ReadTokenFile(token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "vigild: %s\n", token.status().message().c_str());
    return 2;
  }
  options.token = token.value();
  options.job_file = std::filesystem::absolute(job_file).string();
  options.workdir = std::filesystem::absolute(workdir).string();
  if (Status st = MakeDirs(options.workdir); !st.ok()) {
    std::fprintf(stderr, "vigild: %s\n", st.ToString().c_str());
    return 1;
  }
  auto logbook = Logbook::Open(options.workdir + "/logbook.sqlite", true);
  if (!logbook.ok()) {
    std::fprintf(stderr, "vigild: %s\n", logbook.status().ToString().c_str());
    return 1;
  }
  auto spec_text = ReadFile(job_file);
  auto run_id = logbook.value()->CreateRun(spec->name, spec_text.ok() ? spec_text.value() : "",
                                           spec->ConfigHash(), options.workdir, NowMicros());
  if (!run_id.ok()) {
    std::fprintf(stderr, "vigild: %s\n", run_id.status().ToString().c_str());
    return 1;
  }

  boost::asio::io_context io;
  Coordinator coordinator(io, spec.value(), options, std::move(logbook.value()), run_id.value());
  // The handler is in place before Start() publishes vigild.addr: whoever
  // reads the address may signal at once, and the stop must reach the logbook.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    log->warn("signal {}: stopping the job", sig);
    coordinator.StopJob("vigild received signal " + std::to_string(sig));
  });
  if (Status st = coordinator.Start(); !st.ok()) {
    std::fprintf(stderr, "vigild: %s\n", st.ToString().c_str());
    return 1;
  }
  io.run();
  return coordinator.exit_code();
}
