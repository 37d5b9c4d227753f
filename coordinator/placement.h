// Placement: which agent runs which ranks. Host slot i runs ranks
// [i x ranks_per_host, (i+1) x ranks_per_host) on agent slots()[i]. A slot
// whose agent is lost or whose host is cordoned is vacant until a spare (a
// connected agent in no slot, its host not cordoned) takes it; a generation
// launches only with no slot vacant.
//
// The world can shrink (drop vacant slots, when the global batch divides
// over the ranks left, and an expert-parallel MoE's experts do) and grow
// back (world.regrow: free spares fill the slots dropped, as far as the
// global batch divides). The global batch is kept either way: each rank's
// share changes.
//
// A value: the recovery planner plans on a copy and the controller adopts
// the copy it carries out. Reads the agents through `AgentLink`.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/job_spec.h"
#include "coordinator/agent_link.h"

namespace vigil::coordinator {

class Placement {
 public:
  Placement(const JobSpec* spec, const AgentLink* agents) : spec_(spec), agents_(agents) {}

  const AgentLink* agents() const { return agents_; }
  // The first world: the first world.hosts connected agents.
  void Fill();
  // The world a vigild that took the run over found: agents by slot.
  void Adopt(std::vector<int> slots) { SetSlots(std::move(slots)); }
  const std::vector<int>& slots() const { return slots_; }
  int world_size() const { return static_cast<int>(slots_.size()) * spec_->world.ranks_per_host; }
  // Sequences per rank when the world differs from the spec's (0: the spec's).
  int batch_per_rank() const { return batch_per_rank_; }
  int AgentOfSlot(int slot) const { return slots_.at(static_cast<size_t>(slot)); }
  bool Placed(int agent) const;

  bool Cordoned(const std::string& host) const { return cordoned_.count(host) > 0; }
  // False if it was cordoned already (or `host` is empty).
  bool Cordon(const std::string& host);
  bool Usable(int agent) const;
  std::vector<int> FreeSpares() const;
  std::optional<int> VacantSlot() const;
  std::string VacancyReason(int slot) const;

  // One spare into the first vacant slot.
  struct SpareMove {
    int slot = 0;
    int replaced = -1, spare = -1;  // agents
    size_t spares_left = 0;
  };
  std::optional<SpareMove> FillOne();

  // Why `hosts` hosts cannot carry the job's global batch (and experts); "" when they can.
  std::string CannotPlaceOn(int hosts) const;
  struct Resize {
    int from_world = 0, to_world = 0;
    int64_t batch_per_rank = 0, global_batch = 0;
    std::vector<int> slots;
    std::vector<std::string> hosts_added;
    std::string cannot;  // non-empty: it cannot be done, and why
  };
  // Without the vacant slots.
  Resize PlanShrink() const;
  // Back toward world.hosts with free spares; none if nothing can be added.
  std::optional<Resize> PlanRegrow() const;
  void Apply(const Resize& r);

  std::string HostState(int agent) const;  // common/vocabulary.h's kHostStates
  // Every host that registered: {host, state, slot, ranks}.
  nlohmann::json Hosts() const;

 private:
  void SetSlots(std::vector<int> slots);

  const JobSpec* spec_;
  const AgentLink* agents_;
  std::vector<int> slots_;
  std::set<std::string> cordoned_;
  int batch_per_rank_ = 0;
};

}  // namespace vigil::coordinator
