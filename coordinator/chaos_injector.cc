#include "coordinator/chaos_injector.h"

#include <signal.h>
#include <string.h>

#include "common/util.h"
#include "common/vocabulary.h"

namespace vigil::coordinator {

using nlohmann::json;

namespace {

// Faults the rank's own signal handlers carry out (SIGKILL and SIGSTOP need none).
bool NeedsRankHandlers(const std::string& kind) {
  const int sig = ChaosSignal(kind);
  return sig != 0 && sig != SIGKILL && sig != SIGSTOP;
}

}  // namespace

ChaosInjector::ChaosInjector(std::vector<ChaosFault> faults, Clock* clock, AgentLink* agents,
                             Record record, SelfFault self_fault)
    : faults_(std::move(faults)),
      clock_(clock),
      agents_(agents),
      record_(std::move(record)),
      self_fault_(std::move(self_fault)),
      armed_(!faults_.empty()),
      log_(MakeLogger("chaos")) {}

Status ChaosInjector::Add(const std::string& spec, int world_size) {
  auto f = ParseChaosFault(spec);
  if (!f.ok()) return f.status();
  if ((ChaosSignal(f->kind) || IsHostFault(f->kind)) && f->rank >= world_size)
    return Status::InvalidArgument("rank " + std::to_string(f->rank) + " is outside the world of " +
                                   std::to_string(world_size) + " ranks");
  if (NeedsRankHandlers(f->kind) && !armed_)
    return Status::FailedPrecondition(
        "a " + f->kind +
        " fault needs the ranks' fault-injection handlers, which only a job started with "
        "--chaos installs (kill-rank, hang-rank, kill-agent, xid and corrupt-checkpoint need "
        "none)");
  faults_.push_back(f.value());
  return Status::Ok();
}

void ChaosInjector::Restore(const std::vector<std::string>& fired_specs) {
  for (const auto& spec : fired_specs) {
    for (auto& f : faults_) {
      if (!f.fired && f.spec == spec) {
        f.fired = true;
        break;
      }
    }
  }
}

void ChaosInjector::Damage(ChaosFault& f, const std::string& target) {
  f.fired = true;
  Status st = target.empty() ? Status::NotFound("no committed checkpoint to damage")
                             : DamageCheckpoint(target, f.how);
  const std::string outcome = st.ok() ? "checkpoint damaged" : "not injected: " + st.message();
  record_({action::kInjectFault, json{{"fault", f.spec}, {"checkpoint", target}, {"damage", f.how}},
           outcome});
  log_->warn("chaos: {} {} ({})", f.how, target, outcome);
}

void ChaosInjector::OnStep(const wire::RankReport& report, int64_t generation,
                           const std::function<int(int)>& agent_of_rank,
                           const std::string& newest_checkpoint) {
  const int rank = static_cast<int>(report.rank());
  for (auto& f : faults_) {
    if (suspended_) return;
    if (f.fired || static_cast<int64_t>(report.step()) < f.step) continue;
    if (IsCoordinatorFault(f.kind)) {
      if (rank != 0) continue;
      f.fired = true;
      json params{{"fault", f.spec}, {"at_step", report.step()}};
      if (f.hang_ms) params["hang_ms"] = f.hang_ms;
      record_({action::kInjectFault, params,
               self_fault_ ? "vigild faults itself once this is committed"
                           : "not injected: no vigild to fault"});
      log_->warn("chaos: {} at step {}", f.spec, report.step());
      if (self_fault_) {
        suspended_ = true;
        self_fault_(f, [this] { suspended_ = false; });
      }
      continue;
    }
    if (f.kind == "corrupt-checkpoint" && rank == 0) Damage(f, newest_checkpoint);
    if (IsHostFault(f.kind) && f.rank == rank) {
      f.fired = true;
      const int agent = agent_of_rank(f.rank);
      record_({action::kInjectFault,
               json{{"fault", f.spec},
                    {"rank", f.rank},
                    {"host", agents_->agent_host(agent)},
                    {"at_step", report.step()}},
               "sent to the agent"});
      log_->warn("chaos: {} on {} at step {}", f.spec, agents_->agent_host(agent), report.step());
      wire::Envelope env;
      auto* inj = env.mutable_inject_fault();
      inj->set_kind(f.kind == "xid" ? wire::InjectFault::XID : wire::InjectFault::KILL_AGENT);
      inj->set_generation(static_cast<uint64_t>(generation));
      inj->set_rank(static_cast<uint32_t>(f.rank));
      inj->set_xid(static_cast<uint32_t>(f.xid));
      inj->set_reason("chaos " + f.spec);
      agents_->SendToAgent(agent, env);
      if (f.kind == "xid") sent_at_us_[f.rank] = clock_->NowMicros();
      if (f.kind == "kill-agent") agent_sent_at_us_[agent] = clock_->NowMicros();
      continue;
    }
    const int sig = ChaosSignal(f.kind);
    if (!sig || f.rank != rank) continue;
    f.fired = true;
    record_({action::kInjectFault,
             json{{"fault", f.spec},
                  {"rank", f.rank},
                  {"at_step", report.step()},
                  {"signal", sigabbrev_np(sig) ? sigabbrev_np(sig) : ""}},
             "signal sent"});
    log_->warn("chaos: {} rank {} at step {} ({})", f.kind, f.rank, report.step(), f.spec);
    wire::Envelope env;
    auto* s = env.mutable_signal_rank();
    s->set_generation(static_cast<uint64_t>(generation));
    s->set_rank(static_cast<uint32_t>(f.rank));
    s->set_signal(sig);
    s->set_reason("chaos " + f.spec);
    agents_->SendToAgent(agent_of_rank(f.rank), env);
    if (sig != SIGKILL) sent_at_us_[f.rank] = clock_->NowMicros();
  }
}

std::optional<int64_t> ChaosInjector::TakeInjectedAt(std::optional<int> rank) {
  auto it = rank ? sent_at_us_.find(*rank) : sent_at_us_.begin();
  if (it == sent_at_us_.end()) return std::nullopt;
  const int64_t at = it->second;
  sent_at_us_.erase(it);
  return at;
}

std::optional<int64_t> ChaosInjector::TakeAgentInjectedAt(int agent) {
  auto it = agent_sent_at_us_.find(agent);
  if (it == agent_sent_at_us_.end()) return std::nullopt;
  const int64_t at = it->second;
  agent_sent_at_us_.erase(it);
  return at;
}

}  // namespace vigil::coordinator
