// vigild under Slurm: the cordons the playbook orders, carried out in Slurm
// as drains (slurm_drainer.h), each recorded as a `slurm_drain` intervention
// of the cordon's event.
#include <nlohmann/json.hpp>

#include "coordinator/coordinator.h"

namespace vigil::coordinator {

using nlohmann::json;

void Coordinator::DrainInSlurm(int64_t event_id, const std::string& host, const std::string& kind) {
  if (host.empty()) return;
  log_->warn("draining node {} in Slurm (job {}): {}", host, options_.slurm_job_id,
             SlurmDrainer::Reason(event_id, kind));
  drainer_->Drain({event_id, host, kind}, [this](const SlurmDrainer::Outcome& o) {
    const json params{{"node", o.order.node},
                      {"reason", o.reason},
                      {"slurm_job_id", options_.slurm_job_id},
                      {"command", o.command},
                      {"elapsed_ms", o.elapsed_ms}};
    std::string outcome;
    if (o.drained) {
      outcome = "drained in Slurm in " + std::to_string(o.elapsed_ms) + " ms (" + o.detail + ")";
      log_->warn("node {} drained in Slurm: {}", o.order.node, o.reason);
    } else {
      outcome = "not drained (" + o.detail +
                "): the node is cordoned in this job only; drain it "
                "by hand: " +
                o.command;
      log_->error("node {} not drained in Slurm: {}", o.order.node, o.detail);
    }
    controller_->RecordExecuted(o.order.event_id, action::kSlurmDrain, "auto:slurm", params,
                                outcome);
  });
}

}  // namespace vigil::coordinator
