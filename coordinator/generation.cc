#include "coordinator/generation.h"

#include <algorithm>

namespace vigil::coordinator {

bool Generation::Has(int agent) const {
  return std::find(agents.begin(), agents.end(), agent) != agents.end();
}

wire::Envelope LaunchOrder(const Generation& g, int slot, const JobPaths& paths,
                           const LaunchSettings& s) {
  wire::Envelope env;
  auto* l = env.mutable_launch_ranks();
  l->set_generation(static_cast<uint64_t>(g.number));
  l->set_world_size(static_cast<uint32_t>(s.world_size));
  if (s.batch_per_rank > 0) l->set_batch_per_rank(static_cast<uint32_t>(s.batch_per_rank));
  for (int r = slot * s.ranks_per_host; r < (slot + 1) * s.ranks_per_host; ++r)
    l->add_ranks(static_cast<uint32_t>(r));
  l->set_store_address(paths.store_address);
  l->set_resume_from(g.resumed_from);
  l->set_job_file(paths.job_file);
  l->set_log_dir(paths.log_dir);
  l->set_checkpoint_dir(paths.checkpoint_dir);
  l->set_optimizer(s.optimizer);
  if (s.lr_scale > 0) l->set_lr_scale(s.lr_scale);
  if (s.skip_batches > 0) {
    l->set_skip_batches(static_cast<uint32_t>(s.skip_batches));
    l->set_skip_at_step(static_cast<uint64_t>(s.skip_at_step));
  }
  l->set_chaos(s.chaos);
  return env;
}

}  // namespace vigil::coordinator
