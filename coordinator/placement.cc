#include "coordinator/placement.h"

#include <algorithm>

namespace vigil::coordinator {

using nlohmann::json;

void Placement::Fill() {
  std::vector<int> slots;
  for (int a = 0; a < agents_->agent_count() && static_cast<int>(slots.size()) < spec_->world.hosts;
       ++a) {
    if (agents_->agent_connected(a)) slots.push_back(a);
  }
  SetSlots(std::move(slots));
}

void Placement::SetSlots(std::vector<int> slots) {
  slots_ = std::move(slots);
  const int world = world_size();
  batch_per_rank_ = world ? static_cast<int>(spec_->global_batch() / world) : 0;
  if (batch_per_rank_ == spec_->schedule.batch_per_rank) batch_per_rank_ = 0;
}

bool Placement::Placed(int agent) const {
  return std::find(slots_.begin(), slots_.end(), agent) != slots_.end();
}

bool Placement::Cordon(const std::string& host) {
  return !host.empty() && cordoned_.insert(host).second;
}

bool Placement::Usable(int agent) const {
  return agents_->agent_connected(agent) && !cordoned_.count(agents_->agent_host(agent));
}

std::vector<int> Placement::FreeSpares() const {
  std::vector<int> free;
  for (int a = 0; a < agents_->agent_count(); ++a) {
    if (Usable(a) && !Placed(a)) free.push_back(a);
  }
  return free;
}

std::optional<int> Placement::VacantSlot() const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!Usable(slots_[i])) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string Placement::VacancyReason(int slot) const {
  const std::string host = agents_->agent_host(AgentOfSlot(slot));
  return "host " + host + " (slot " + std::to_string(slot) + ") is " +
         (cordoned_.count(host) ? "cordoned" : "lost") + " and no spare host is free";
}

std::optional<Placement::SpareMove> Placement::FillOne() {
  const auto slot = VacantSlot();
  if (!slot) return std::nullopt;
  const auto spares = FreeSpares();
  if (spares.empty()) return std::nullopt;
  SpareMove m;
  m.slot = *slot;
  m.replaced = slots_[static_cast<size_t>(*slot)];
  m.spare = spares.front();
  m.spares_left = spares.size() - 1;
  slots_[static_cast<size_t>(*slot)] = m.spare;
  return m;
}

std::string Placement::CannotPlaceOn(int hosts) const {
  const int64_t global = spec_->global_batch();
  const int64_t world = static_cast<int64_t>(hosts) * spec_->world.ranks_per_host;
  const int experts = spec_->model.moe.experts;
  if (hosts == 0) return "no host is left";
  if (global % world != 0) {
    return "the global batch of " + std::to_string(global) + " does not divide over " +
           std::to_string(world) + " ranks";
  }
  if (experts > 0 && spec_->model.moe.placement == "expert_parallel" && experts % world != 0)
    return std::to_string(experts) + " experts do not divide over " + std::to_string(world) +
           " ranks";
  return "";
}

Placement::Resize Placement::PlanShrink() const {
  Resize r;
  for (int a : slots_) {
    if (Usable(a)) r.slots.push_back(a);
  }
  r.global_batch = spec_->global_batch();
  r.from_world = world_size();
  r.to_world = static_cast<int>(r.slots.size()) * spec_->world.ranks_per_host;
  r.batch_per_rank = r.to_world ? r.global_batch / r.to_world : 0;
  r.cannot = CannotPlaceOn(static_cast<int>(r.slots.size()));
  return r;
}

std::optional<Placement::Resize> Placement::PlanRegrow() const {
  const int now = static_cast<int>(slots_.size());
  if (now >= spec_->world.hosts || VacantSlot()) return std::nullopt;
  const auto spares = FreeSpares();
  int hosts = std::min<int>(spec_->world.hosts, now + static_cast<int>(spares.size()));
  while (hosts > now && !CannotPlaceOn(hosts).empty()) --hosts;
  if (hosts == now) return std::nullopt;
  Resize r;
  r.slots = slots_;
  for (int i = 0; now + i < hosts; ++i) {
    r.slots.push_back(spares[static_cast<size_t>(i)]);
    r.hosts_added.push_back(agents_->agent_host(spares[static_cast<size_t>(i)]));
  }
  r.global_batch = spec_->global_batch();
  r.from_world = world_size();
  r.to_world = hosts * spec_->world.ranks_per_host;
  r.batch_per_rank = r.global_batch / r.to_world;
  return r;
}

void Placement::Apply(const Resize& r) { SetSlots(r.slots); }

std::string Placement::HostState(int agent) const {
  if (!agents_->agent_connected(agent)) return "lost";
  if (cordoned_.count(agents_->agent_host(agent))) return "cordoned";
  return Placed(agent) ? "active" : "spare";
}

json Placement::Hosts() const {
  json out = json::array();
  const int rph = spec_->world.ranks_per_host;
  for (int a = 0; a < agents_->agent_count(); ++a) {
    json h{{"host", agents_->agent_host(a)}, {"state", HostState(a)}};
    const auto slot = std::find(slots_.begin(), slots_.end(), a);
    if (slot != slots_.end()) {
      const int i = static_cast<int>(slot - slots_.begin());
      h["slot"] = i;
      h["ranks"] = json::array();
      for (int r = i * rph; r < (i + 1) * rph; ++r) h["ranks"].push_back(r);
    }
    out.push_back(h);
  }
  return out;
}

}  // namespace vigil::coordinator
