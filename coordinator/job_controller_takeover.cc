// JobController, continued: a vigild taking over a run whose vigild died
// (takeover.h). Restore() puts back what the logbook holds before any agent
// registers; Adopt() reconciles it with what the agents say they run once
// every host of the run's world has registered again (or was given up).
#include <algorithm>

#include "common/vocabulary.h"
#include "coordinator/job_controller.h"

namespace vigil::coordinator {

using nlohmann::json;

void JobController::Restore(const RunTakeover& t) {
  catalog_.Restore(t.checkpoints);
  const PlaybookHistory history = t.History();
  playbook_.Replay(history.seen, history.applied, history.restarts);
  for (const auto& host : t.Cordoned()) placement_.Cordon(host);
  optimizer_override_ = t.OptimizerOverride();
  std::vector<std::string> fired;
  for (const auto& i : t.interventions) {
    if (i.action != action::kInjectFault) continue;
    auto p = json::parse(i.params_json, nullptr, false);
    if (p.is_object()) fired.push_back(p.value("fault", ""));
  }
  chaos_.Restore(fired);
  progress_.restarts = t.Restarts();
  progress_.started_at_us = t.run.started_at_us;
  if (t.last_step) {
    progress_.step = t.last_step->step;
    progress_.loss = t.last_step->loss.value_or(0.0);
  }
  if (const GenerationRow* g = t.newest()) {
    gen_.number = g->number;
    progress_.generation = g->number;
  }
  if (!t.events.empty()) last_event_ = t.events.back().id;
  paused_event_ = t.PausedEvent();
  for (const auto& c : t.checkpoints) {
    if (c.state != checkpoint_state::kCommitted) continue;
    metrics_->last_checkpoint_step.Set(static_cast<double>(c.step));
    metrics_->last_checkpoint_timestamp.Set(static_cast<double>(c.committed_at_us) / 1e6);
    break;
  }
  metrics_->start_timestamp.Set(static_cast<double>(progress_.started_at_us) / 1e6);
  takeover_ = Takeover{t, t.SlotHosts(), Now()};
  log_->warn("taking over run {} ({}): generation {}{}, {} checkpoint(s), {} restart(s), step {}",
             run_id_, t.run.status, gen_.number, t.in_flight() ? " in flight" : " ended",
             t.checkpoints.size(), progress_.restarts, progress_.step);
}

const std::vector<std::string>& JobController::takeover_hosts() const {
  static const std::vector<std::string> kNone;
  return takeover_ ? takeover_->hosts : kNone;
}

void JobController::Adopt(const std::vector<int>& slot_agents,
                          const std::map<int, wire::Hello>& hellos) {
  if (!takeover_ || state() != JobState::kPending) {
    log_->error("bug: Adopt without a takeover under way");
    return;
  }
  const Takeover tk = std::move(*takeover_);
  takeover_.reset();
  const RunTakeover& t = tk.run;
  Placement p = placement_;
  p.Adopt(slot_agents);
  AdoptPlacement(p);
  const int rph = spec_.world.ranks_per_host;
  const GenerationRow* g = t.in_flight();
  const bool adopt = g && !t.paused();

  // What the agents run that is not the generation adopted: torn down.
  std::map<int, std::set<uint64_t>> stale;  // agent -> generations
  json hosts = json::array();
  for (const auto& [agent, hello] : hellos) {
    json h{{"host", hello.host()},
           {"live_ranks", hello.live_ranks_size()},
           {"exits_kept", hello.exited_ranks_size()}};
    if (hello.dropped_messages()) h["messages_dropped"] = hello.dropped_messages();
    hosts.push_back(h);
    for (const auto& r : hello.live_ranks()) {
      if (!adopt || static_cast<int64_t>(r.generation()) != g->number)
        stale[agent].insert(r.generation());
    }
  }
  json absent = json::array();
  for (int a : slot_agents) {
    if (!hellos.count(a)) absent.push_back(agents_->agent_host(a));
  }

  json detail{{"downtime_ms", static_cast<double>(Now() - t.LastWrittenUs()) / 1000.0},
              {"found",
               {{"run_status", t.run.status},
                {"generation", t.newest() ? t.newest()->number : -1},
                {"generation_in_flight", g != nullptr},
                {"checkpoints", t.checkpoints.size()},
                {"restarts", progress_.restarts},
                {"step", progress_.step}}},
              {"hosts", hosts},
              {"hosts_not_back", absent},
              {"waited_ms", static_cast<double>(Now() - tk.started_us) / 1000.0}};
  if (!t.epochs.empty()) detail["previous_vigild_pid"] = t.epochs.back().pid;

  std::vector<int> missing;  // ranks no agent accounts for
  if (adopt) {
    Generation gen;
    gen.number = g->number;
    gen.row = g->id;
    gen.agents = slot_agents;
    gen.resumed_from = g->resumed_from_path;
    gen.resumed_from_step = g->resumed_from_step.value_or(0);
    gen.first_step_seen = g->first_step_at_us.has_value();
    json pids = json::object();
    for (size_t slot = 0; slot < slot_agents.size(); ++slot) {
      auto it = hellos.find(slot_agents[slot]);
      if (it == hellos.end()) continue;  // a host not back: its loss is the detection
      for (int r = static_cast<int>(slot) * rph; r < static_cast<int>(slot + 1) * rph; ++r) {
        auto of = [&](const auto& list) -> const wire::LiveRank* {
          for (const auto& l : list) {
            if (static_cast<int64_t>(l.generation()) == gen.number &&
                static_cast<int>(l.rank()) == r)
              return &l;
          }
          return nullptr;
        };
        if (const auto* live = of(it->second.live_ranks())) {
          gen.alive.insert(r);
          pids[std::to_string(r)] = live->pid();
        } else if (of(it->second.exited_ranks())) {
          gen.alive.insert(r);  // its exit, kept by the agent, follows: a detection then
        } else {
          missing.push_back(r);
        }
      }
    }
    gen_ = std::move(gen);
    if (t.last_step && t.last_step->generation_id == gen_.row)
      steps_.Resume(gen_.row, t.last_step->step);
    hangs_.NewGeneration();
    numerics_.Reset();
    stragglers_.Reset();
    goodput_.GenerationStarted(gen_.resumed_from);
    if (gen_.first_step_seen) goodput_.FirstStep(Now());
    progress_.generation = gen_.number;
    progress_.live_ranks = static_cast<int>(gen_.alive.size());
    metrics_->generation.Set(static_cast<double>(gen_.number));
    metrics_->live_ranks.Set(progress_.live_ranks);
    detail["adopted"] = {{"generation", gen_.number}, {"pids", pids}, {"missing_ranks", missing}};
  } else {
    gen_.agents = slot_agents;
    gen_.row = 0;
    detail["adopted"] = nullptr;
  }
  const int64_t event_id = RecordEvent(kind::kCoordinatorRestart, detail);
  log_->warn("took over run {}: {}", run_id_, detail.dump());

  for (const auto& [agent, generations] : stale) {
    for (uint64_t number : generations) {
      log_->warn("{} still runs ranks of generation {}: torn down", agents_->agent_host(agent),
                 number);
      wire::Envelope env;
      env.mutable_kill_generation()->set_generation(number);
      env.mutable_kill_generation()->set_grace_ms(
          static_cast<uint32_t>(spec_.limits.kill_grace_ms));
      agents_->SendToAgent(agent, env);
    }
  }

  if (adopt) {
    const std::string why = "vigild took over generation " + std::to_string(gen_.number) +
                            " as it stands (" + std::to_string(gen_.alive.size()) + " rank(s))";
    if (gen_.first_step_seen) {
      machine_.TakeOver(JobState::kRunning, why);
      hangs_.StartWatching(gen_.alive, Now());
    } else {
      machine_.TakeOver(JobState::kRendezvous, why);
      ArmStartTimer();
    }
    if (!missing.empty()) HandleFailure(MissingRanksDetection(missing));
    return;
  }
  if (t.paused()) {
    const std::string why = "paused before vigild restarted";
    progress_.message =
        "paused (vigild restarted; see `vigil logbook ls`). Continue with "
        "`vigil resume --workdir " +
        paths_.workdir + "`";
    metrics_->waiting_for_human.Set(1);
    machine_.TakeOver(JobState::kPaused, why);
    return;
  }
  // Between generations: the restart the vigild before decided is carried
  // out (its checkpoint and modifiers as recorded), once the agents have
  // confirmed that nothing of the last generation runs.
  RestorePendingRestart(t);
  last_event_ = event_id;
  machine_.TakeOver(JobState::kRecovering, "vigild restarted between generations");
  KillGeneration();
}

void JobController::RestorePendingRestart(const RunTakeover& t) {
  const auto restart = t.PendingRestart();
  if (!restart) return;  // the launch chooses afresh
  pending_cause_ = restart->id;
  std::optional<EventRow> event;
  for (const auto& e : t.events) {
    if (restart->event_id && e.id == *restart->event_id) event = e;
  }
  const bool counts = event && (restart->action == action::kRestartFromLatest ||
                                restart->action == action::kRollback);
  pending_restart_ =
      PendingRestart{event ? event->kind : "", event ? event->time_us : Now(), counts};
  recovering_from_ = event ? event->kind : "";
  auto params = json::parse(restart->params_json, nullptr, false);
  if (!params.is_object() || !params.contains("checkpoint")) return;
  const std::string path = params.value("checkpoint", "");
  CheckpointChoice choice;
  for (const auto& row : catalog_.rows()) {
    if (!path.empty() && row.path == path) choice.checkpoint = row;
  }
  if (!path.empty() && !choice.checkpoint) return;  // gone since: the launch chooses afresh
  const int64_t from_step = choice.checkpoint ? choice.checkpoint->step : -1;
  for (const auto& row : catalog_.rows()) {
    if (row.state == checkpoint_state::kCommitted && row.step > from_step)
      choice.rolled_back.push_back(row);
  }
  // The modifiers recorded with it.
  for (const auto& i : t.interventions) {
    if (i.event_id != restart->event_id || i.id < restart->id) continue;
    auto p = json::parse(i.params_json, nullptr, false);
    if (!p.is_object()) continue;
    if (i.action == action::kSkipBatches) {
      pending_modifiers_.skip_batches = p.value("batches", int64_t{0});
      if (p.contains("ending_at_step") && p["ending_at_step"].is_number_integer())
        pending_modifiers_.skip_end_step = p["ending_at_step"].get<int64_t>();
    } else if (i.action == action::kScaleLr) {
      pending_modifiers_.scale_lr = p.value("factor", 0.0);
      if (pending_modifiers_.scale_lr > 0)
        choice.lr_scale = p.value("to", pending_modifiers_.scale_lr) / pending_modifiers_.scale_lr;
    }
  }
  pending_checkpoint_ = std::move(choice);
}

Detection JobController::MissingRanksDetection(const std::vector<int>& ranks) const {
  Detection d;
  d.kind = kind::kProcessExit;
  d.rank = ranks.front();
  d.agent = AgentOfRank(ranks.front());
  d.host = HostOf(d.agent);
  d.time_us = Now();
  d.detail = json{{"reason", "gone while vigild was away; its exit status was not kept"},
                  {"ranks", ranks},
                  {"generation", gen_.number}};
  d.summary = std::to_string(ranks.size()) + " rank(s) of generation " +
              std::to_string(gen_.number) + " (first: rank " + std::to_string(ranks.front()) +
              " on " + d.host + ") were gone when vigild took the run over";
  return d;
}

}  // namespace vigil::coordinator
