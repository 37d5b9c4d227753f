// vigild under Slurm: the cordons the playbook orders, carried out in Slurm
// as drains (slurm_drainer.h), each recorded as a `slurm_drain` intervention
// of the cordon's event.
#include <nlohmann/json.hpp>

#include "coordinator/coordinator.h"

namespace vigil::coordinator {

using nlohmann::json;

void Coordinator::StopJob(const std::string& why) {
  CancelPendingDrains(
      "vigild was stopped by a signal (" + why + ") within slurm.drain_delay_ms of the cordon: " +
      "a scancel stops every step at once, and what looked like a failure was most likely that");
  controller_->Stop(why);
}

void Coordinator::DrainInSlurm(int64_t event_id, const std::string& host, const std::string& kind) {
  if (host.empty()) return;
  const std::string reason = SlurmDrainer::Reason(event_id, kind);
  if (!drains_cancelled_.empty())
    return RecordDrain(event_id, host, reason, false, "not drained: " + drains_cancelled_, {});
  log_->warn("draining node {} in Slurm (job {}) in {} ms: {}", host, options_.slurm_job_id,
             spec_.slurm.drain_delay_ms, reason);
  auto timer = std::make_shared<boost::asio::steady_timer>(io_);
  pending_drains_.push_back({event_id, host, kind, timer});
  timer->expires_after(std::chrono::milliseconds(spec_.slurm.drain_delay_ms));
  timer->async_wait([this, event_id, host](boost::system::error_code ec) {
    if (ec) return;
    for (auto it = pending_drains_.begin(); it != pending_drains_.end(); ++it) {
      if (it->event_id != event_id || it->host != host) continue;
      const PendingDrain d = *it;
      pending_drains_.erase(it);
      return StartDrain(d.event_id, d.host, d.kind);
    }
  });
}

void Coordinator::StartDrain(int64_t event_id, const std::string& host, const std::string& kind) {
  drainer_->Drain({event_id, host, kind}, [this](const SlurmDrainer::Outcome& o) {
    const json more{{"command", o.command}, {"elapsed_ms", o.elapsed_ms}};
    if (o.drained) {
      log_->warn("node {} drained in Slurm: {}", o.order.node, o.reason);
      return RecordDrain(
          o.order.event_id, o.order.node, o.reason, true,
          "drained in Slurm in " + std::to_string(o.elapsed_ms) + " ms (" + o.detail + ")", more);
    }
    log_->error("node {} not drained in Slurm: {}", o.order.node, o.detail);
    RecordDrain(o.order.event_id, o.order.node, o.reason, false,
                "not drained (" + o.detail +
                    "): the node is cordoned in this job only; drain it by hand: " + o.command,
                more);
  });
}

void Coordinator::RecordDrain(int64_t event_id, const std::string& node, const std::string& reason,
                              bool drained, const std::string& outcome, const json& more) {
  json params{{"node", node},
              {"reason", reason},
              {"slurm_job_id", options_.slurm_job_id},
              {"drained", drained}};
  if (more.is_object()) params.update(more);
  controller_->RecordExecuted(event_id, action::kSlurmDrain, "auto:slurm", params, outcome);
}

void Coordinator::CancelPendingDrains(const std::string& why) {
  drains_cancelled_ = why;
  auto pending = std::move(pending_drains_);
  pending_drains_.clear();
  for (auto& d : pending) {
    d.timer->cancel();
    log_->warn("node {} not drained: {}", d.host, why);
    RecordDrain(d.event_id, d.host, SlurmDrainer::Reason(d.event_id, d.kind), false,
                "not drained: " + why, {});
  }
}

void Coordinator::AfterDrains(std::chrono::steady_clock::time_point deadline,
                              std::function<void()> then) {
  if (!drainer_ || (pending_drains_.empty() && drainer_->in_flight() == 0)) return then();
  if (std::chrono::steady_clock::now() >= deadline) {
    log_->error("{} drain(s) in Slurm still waiting and {} under way at exit: not recorded",
                pending_drains_.size(), drainer_->in_flight());
    return then();
  }
  shutdown_timer_.expires_after(std::chrono::milliseconds(50));
  shutdown_timer_.async_wait(
      [this, deadline, then = std::move(then)](boost::system::error_code) mutable {
        AfterDrains(deadline, std::move(then));
      });
}

}  // namespace vigil::coordinator
