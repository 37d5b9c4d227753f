// Fires the job's chaos faults (chaos.h) as training reaches them: each
// once, when the rank it names (rank 0 for a damaged checkpoint) first
// reports a step at or past the fault's. Rank faults are real signals the
// rank's agent delivers; host faults (kill-agent, xid) the agent carries
// out; a damaged checkpoint vigild does itself, on disk, and its own
// faults (kill-vigild, hang-vigild) through SelfFault. Each is one
// `inject_fault` intervention (actor `chaos`), recorded before it is sent.
//
// It remembers when each fault was sent, so that the detection it causes can
// say how long detecting it took (TakeInjectedAt); faults sent to a
// generation that ended are forgotten with it.
//
// Only a job started with chaos faults launches its ranks with the
// fault-injection signal handlers (rank_contract::kEnvChaos); faults that
// need them are refused in a job without.
//
// Single-threaded: the event loop's.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/util.h"
#include "common/vigil.pb.h"
#include "coordinator/agent_link.h"
#include "coordinator/chaos.h"
#include "coordinator/clock.h"
#include "coordinator/recovery_planner.h"

namespace vigil::coordinator {

class ChaosInjector {
 public:
  using Record = std::function<void(const PlannedAction&)>;
  // Carries out one of vigild's own faults (kill-vigild, hang-vigild),
  // after its intervention is recorded, and calls `done` (on the event
  // loop) if this vigild lives on. No fault fires meanwhile: one recorded
  // as fired while vigild dies would be carried out by nobody.
  using SelfFault = std::function<void(const ChaosFault&, std::function<void()> done)>;
  ChaosInjector(std::vector<ChaosFault> faults, Clock* clock, AgentLink* agents, Record record,
                SelfFault self_fault);

  // The ranks get the fault-injection signal handlers (the job started with chaos).
  bool armed() const { return armed_; }
  // A fault to inject from now (`vigil chaos`), checked against the world.
  Status Add(const std::string& spec, int world_size);
  // A rank of `generation` reported a step. `agent_of_rank` maps a rank to
  // its agent; `newest_checkpoint` is what a checkpoint fault damages.
  void OnStep(const wire::RankReport& r, int64_t generation,
              const std::function<int(int)>& agent_of_rank, const std::string& newest_checkpoint);

  // When a fault was sent to `rank` (any rank if none), forgotten once taken.
  std::optional<int64_t> TakeInjectedAt(std::optional<int> rank);
  // When a kill-agent was sent to `agent`, forgotten once taken.
  std::optional<int64_t> TakeAgentInjectedAt(int agent);
  // A vigild that took the run over: the faults the one before it fired
  // (their specs, as its inject_fault interventions name them) fire no more.
  void Restore(const std::vector<std::string>& fired_specs);
  // A generation launched: what was sent to the last one died with it.
  void NewGeneration() { sent_at_us_.clear(); }

 private:
  void Damage(ChaosFault& f, const std::string& checkpoint);

  std::vector<ChaosFault> faults_;
  Clock* clock_;
  AgentLink* agents_;
  Record record_;
  SelfFault self_fault_;
  bool suspended_ = false;  // a fault of vigild's own is under way
  bool armed_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<int, int64_t> sent_at_us_;        // by rank
  std::map<int, int64_t> agent_sent_at_us_;  // kill-agent, by agent
};

}  // namespace vigil::coordinator
