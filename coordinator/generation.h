// One generation: one start of the whole world, from launch to teardown.
// What it is (number, logbook row, the agents its slots had, the checkpoint
// it resumed from), how far it got (first step seen, ranks alive and
// finished, agents that confirmed its teardown) and what its ranks said
// before exiting (errors, a non-finite gradient).
//
// And the orders that start it: one LaunchRanks per host slot (generation,
// world, ranks, store address, checkpoint, paths, modifiers), which the
// agent turns into each rank's environment (common/rank_contract.h).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/vigil.pb.h"

namespace vigil::coordinator {

struct Generation {
  int64_t number = -1;
  int64_t row = 0;           // its logbook row (0: none yet)
  std::vector<int> agents;   // host slot -> agent, as it launched
  std::string resumed_from;  // checkpoint path, "" for a fresh start
  int64_t resumed_from_step = 0;
  bool first_step_seen = false;
  std::set<int> alive, succeeded;
  std::set<int> agents_stopped;  // confirmed its teardown
  std::map<int, std::string> rank_errors;
  std::map<int, wire::RankReport> nonfinite;  // by rank

  int AgentOfRank(int rank, int ranks_per_host) const {
    return agents.at(static_cast<size_t>(rank / ranks_per_host));
  }
  bool Has(int agent) const;
  // Every agent of it that is still connected has confirmed its teardown.
  template <typename Connected>
  bool AllStopped(Connected connected) const {
    for (int a : agents) {
      if (connected(a) && !agents_stopped.count(a)) return false;
    }
    return true;
  }
};

// The paths and addresses every launch order carries.
struct JobPaths {
  std::string workdir, job_file, checkpoint_dir, log_dir, store_address;
};

struct LaunchSettings {
  int world_size = 0;
  int ranks_per_host = 1;
  int batch_per_rank = 0;  // 0: the spec's
  std::string optimizer;   // "" keeps the spec's
  double lr_scale = 0.0;   // 0: the checkpoint's own
  int64_t skip_batches = 0, skip_at_step = 0;
  bool chaos = false;  // the ranks install the fault-injection handlers
};

// The order for host slot `slot` of generation `g`.
wire::Envelope LaunchOrder(const Generation& g, int slot, const JobPaths& paths,
                           const LaunchSettings& s);

}  // namespace vigil::coordinator
