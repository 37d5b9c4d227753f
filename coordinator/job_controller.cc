#include "coordinator/job_controller.h"

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/retention.h"
#include "common/util.h"
#include "common/xid.h"

namespace vigil::coordinator {

using nlohmann::json;

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kPending:
      return "pending";
    case JobState::kRendezvous:
      return "rendezvous";
    case JobState::kRunning:
      return "running";
    case JobState::kRecovering:
      return "recovering";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kPaused:
      return "paused";
  }
  return "unknown";
}

JobController::JobController(boost::asio::io_context& io, const JobSpec& spec, JobPaths paths,
                             LogbookWriter* logbook, int64_t run_id, AgentLink* agents,
                             RendezvousStore* store, CoordinatorMetrics* metrics,
                             std::vector<ChaosFault> chaos, Playbook playbook)
    : io_(io),
      spec_(spec),
      paths_(std::move(paths)),
      logbook_(logbook),
      run_id_(run_id),
      agents_(agents),
      store_(store),
      metrics_(metrics),
      chaos_(std::move(chaos)),
      playbook_(std::move(playbook)),
      log_(MakeLogger("job")),
      teardown_timer_(io),
      settle_timer_(io),
      start_timer_(io),
      hang_timer_(io) {
  progress_.run_id = run_id;
  progress_.total_steps = spec.schedule.steps;
  progress_.world_size = spec.world.world_size();
  progress_.started_at_us = NowMicros();
  metrics_->total_steps.Set(spec.schedule.steps);
  metrics_->world_size.Set(spec.world.world_size());
  metrics_->SetState(JobStateName(state_));
  metrics_->start_timestamp.Set(static_cast<double>(progress_.started_at_us) / 1e6);
  metrics_->checkpoint_every_steps.Set(spec.checkpoint.every_steps);
  metrics_->model_flops_per_token.Set(spec.model.TrainingFlopsPerToken());
  metrics_->peak_flops.Set(spec.world.peak_tflops_per_rank * 1e12 * spec.world.world_size());
}

JobController::~JobController() { FinishFileWork(); }

void JobController::SetCheckpointState(int64_t id, const std::string& state,
                                       const std::string& new_path) {
  logbook_->SetCheckpointState(id, state, NowMicros(), new_path);
  RememberCheckpointState(id, state, new_path);
}

void JobController::RememberCheckpointState(int64_t id, const std::string& state,
                                            const std::string& new_path) {
  for (auto& row : checkpoints_) {
    if (row.id != id) continue;
    row.state = state;
    if (!new_path.empty()) row.path = new_path;
  }
}

void JobController::Transition(JobState to, const std::string& why) {
  if (to == state_) return;
  log_->info("state {} -> {}: {}", JobStateName(state_), JobStateName(to), why);
  state_ = to;
  progress_.state = to;
  metrics_->SetState(JobStateName(to));
}

void JobController::OnAllAgentsRegistered() {
  if (state_ != JobState::kPending) return;
  for (int a = 0; a < agents_->agent_count() && static_cast<int>(slots_.size()) < spec_.world.hosts;
       ++a) {
    if (agents_->agent_connected(a)) slots_.push_back(a);
  }
  UpdateHostMetrics();
  Launch(std::nullopt);
}

void JobController::OnAgentJoined(int agent) {
  const std::string host = agents_->agent_host(agent);
  if (cordoned_.count(host)) {
    log_->warn("host {} registered again; it is cordoned and gets no ranks", host);
  } else {
    log_->info("host {} waits as a spare ({} free)", host, FreeSpares().size());
  }
  UpdateHostMetrics();
}

bool JobController::Usable(int agent) const {
  return agents_->agent_connected(agent) && !cordoned_.count(agents_->agent_host(agent));
}

std::vector<int> JobController::FreeSpares() const {
  std::vector<int> free;
  for (int a = 0; a < agents_->agent_count(); ++a) {
    if (Usable(a) && std::find(slots_.begin(), slots_.end(), a) == slots_.end()) free.push_back(a);
  }
  return free;
}

std::optional<int> JobController::VacantSlot() const {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!Usable(slots_[i])) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::string JobController::VacancyReason(int slot) const {
  const int agent = slots_.at(static_cast<size_t>(slot));
  const std::string host = agents_->agent_host(agent);
  return "host " + host + " (slot " + std::to_string(slot) + ") is " +
         (cordoned_.count(host) ? "cordoned" : "lost") + " and no spare host is free";
}

bool JobController::FillVacancies(std::optional<int64_t> event, const std::string& actor) {
  while (auto slot = VacantSlot()) {
    const auto spares = FreeSpares();
    if (spares.empty()) {
      AddIntervention(event, "use_spare", actor, json{{"slot", *slot}}, VacancyReason(*slot));
      return false;
    }
    const int old = slots_[static_cast<size_t>(*slot)];
    slots_[static_cast<size_t>(*slot)] = spares.front();
    const int rph = spec_.world.ranks_per_host;
    AddIntervention(event, "use_spare", actor,
                    json{{"slot", *slot},
                         {"replaced", agents_->agent_host(old)},
                         {"spare", agents_->agent_host(spares.front())},
                         {"ranks", json::array({*slot * rph, (*slot + 1) * rph - 1})},
                         {"spares_left", spares.size() - 1}},
                    "ordered");
    log_->warn("slot {}: spare {} takes the place of {}", *slot,
               agents_->agent_host(spares.front()), agents_->agent_host(old));
  }
  UpdateHostMetrics();
  return true;
}

std::string JobController::CannotPlaceOn(int hosts) const {
  const int64_t global = spec_.global_batch();
  const int64_t world = static_cast<int64_t>(hosts) * spec_.world.ranks_per_host;
  const int experts = spec_.model.moe.experts;
  if (hosts == 0) return "no host is left";
  if (global % world != 0) {
    return "the global batch of " + std::to_string(global) + " does not divide over " +
           std::to_string(world) + " ranks";
  }
  if (experts > 0 && spec_.model.moe.placement == "expert_parallel" && experts % world != 0)
    return std::to_string(experts) + " experts do not divide over " + std::to_string(world) +
           " ranks";
  return "";
}

void JobController::Resize(std::vector<int> slots) {
  slots_ = std::move(slots);
  const int64_t global = spec_.global_batch();
  batch_per_rank_ = static_cast<int>(global / world_size());
  if (batch_per_rank_ == spec_.schedule.batch_per_rank) batch_per_rank_ = 0;
  progress_.world_size = world_size();
  metrics_->world_size.Set(static_cast<double>(world_size()));
  metrics_->peak_flops.Set(spec_.world.peak_tflops_per_rank * 1e12 * world_size());
  UpdateHostMetrics();
}

bool JobController::ShrinkWorld(std::optional<int64_t> event, const std::string& actor) {
  std::vector<int> kept;
  for (int a : slots_) {
    if (Usable(a)) kept.push_back(a);
  }
  const int64_t global = spec_.global_batch();
  const int64_t world = static_cast<int64_t>(kept.size()) * spec_.world.ranks_per_host;
  const std::string cannot = CannotPlaceOn(static_cast<int>(kept.size()));
  const json params{{"from_world", world_size()},
                    {"to_world", world},
                    {"batch_per_rank", world ? global / world : 0},
                    {"global_batch", global}};
  if (!cannot.empty()) {
    AddIntervention(event, "shrink_world", actor, params, "cannot shrink: " + cannot);
    return false;
  }
  AddIntervention(event, "shrink_world", actor, params, "ordered");
  log_->warn("shrinking the world from {} to {} ranks, {} sequences per rank", world_size(), world,
             global / world);
  Resize(std::move(kept));
  return true;
}

void JobController::MaybeRegrow(int64_t step) {
  const int now = static_cast<int>(slots_.size());
  if (!spec_.world.regrow || state_ != JobState::kRunning || now >= spec_.world.hosts ||
      step >= spec_.schedule.steps || VacantSlot()) {
    return;
  }
  const auto spares = FreeSpares();
  int hosts = std::min<int>(spec_.world.hosts, now + static_cast<int>(spares.size()));
  while (hosts > now && !CannotPlaceOn(hosts).empty()) --hosts;
  if (hosts == now) return;
  std::vector<int> slots = slots_;
  json added = json::array();
  for (int i = 0; now + i < hosts; ++i) {
    slots.push_back(spares[static_cast<size_t>(i)]);
    added.push_back(agents_->agent_host(spares[static_cast<size_t>(i)]));
  }
  const int64_t global = spec_.global_batch();
  const int from = world_size(), to = hosts * spec_.world.ranks_per_host;
  pending_intervention_ = AddIntervention(std::nullopt, "grow_world", "auto:placement",
                                          json{{"from_world", from},
                                               {"to_world", to},
                                               {"batch_per_rank", global / to},
                                               {"global_batch", global},
                                               {"hosts_added", added},
                                               {"checkpoint_step", step}},
                                          "ordered");
  log_->warn("growing the world back from {} to {} ranks ({} sequences per rank) from step {}",
             from, to, global / to, step);
  Resize(std::move(slots));
  TearDownGeneration("growing the world from " + std::to_string(from) + " to " +
                     std::to_string(to) + " ranks");
}

void JobController::Cordon(std::optional<int64_t> event, const std::string& actor,
                           const std::string& host, const std::string& why) {
  if (host.empty() || !cordoned_.insert(host).second) return;
  AddIntervention(event, "cordon_host", actor, json{{"host", host}}, why);
  log_->warn("cordoned host {}: {}", host, why);
  UpdateHostMetrics();
}

std::string JobController::HostState(int agent) const {
  if (!agents_->agent_connected(agent)) return "lost";
  if (cordoned_.count(agents_->agent_host(agent))) return "cordoned";
  return std::find(slots_.begin(), slots_.end(), agent) != slots_.end() ? "active" : "spare";
}

void JobController::UpdateHostMetrics() {
  std::map<std::string, int> n;
  for (int a = 0; a < agents_->agent_count(); ++a) {
    // A host that came back is a new agent: its newest one is the host's state.
    const std::string state = HostState(a);
    metrics_->SetHostState(agents_->agent_host(a), state);
    ++n[state];
  }
  metrics_->SetHosts(n);
}

json JobController::Hosts() const {
  json out = json::array();
  const int rph = spec_.world.ranks_per_host;
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

void JobController::SendToGeneration(const wire::Envelope& env) {
  for (int a : generation_agents_) agents_->SendToAgent(a, env);
}

JobController::Choice JobController::ChooseCheckpoint() {
  Choice c;
  bool any = false;
  int to_skip = next_.rollback;
  for (const auto& row : checkpoints_) {
    // Retention's (done, under way or failed part way): as if never there.
    if (row.state == "deleted" || row.state == "deleting" || row.state == "delete_failed") continue;
    any = true;
    if (row.state != "committed" || bad_checkpoints_.count(row.path)) continue;
    // Taken at or after a numerical anomaly: it may hold the bad update.
    if (next_.before_step && row.step >= *next_.before_step) {
      c.rolled_back.push_back(row);
      continue;
    }
    if (fallbacks_ > spec_.checkpoint.max_fallbacks) break;
    // A cheap check before a whole world is launched at it: the manifest and
    // every shard's size. The ranks verify every byte they load.
    auto reader = checkpoint::CheckpointReader::Open(checkpoint::Storage::Default(), row.path);
    if (!reader.ok()) {
      RecordCorrupt(row.path, reader.status().message());
      continue;
    }
    if (fallbacks_ > spec_.checkpoint.max_fallbacks) break;
    if (to_skip > 0) {  // a playbook's rollback: go further back
      --to_skip;
      c.rolled_back.push_back(row);
      continue;
    }
    c.checkpoint = row;
    c.lr_scale = reader.value()->manifest().lr_scale;
    return c;
  }
  if (!any) return c;  // nothing was ever committed: a fresh start
  if (fallbacks_ <= spec_.checkpoint.max_fallbacks && (next_.rollback > 0 || next_.before_step)) {
    // Rolled back past every checkpoint: the start is the one state known good.
    return c;
  }
  c.rolled_back.clear();
  c.pause = true;
  c.why = fallbacks_ > spec_.checkpoint.max_fallbacks
              ? std::to_string(fallbacks_) +
                    " corrupt checkpoints skipped, past checkpoint.max_fallbacks (" +
                    std::to_string(spec_.checkpoint.max_fallbacks) + ")"
              : "no committed checkpoint is left that verifies";
  c.why += "; the job is paused instead of starting over. Check them with `vigil ckpt verify " +
           paths_.checkpoint_dir + "/step-*` and see the checkpoint_corrupt events";
  return c;
}

void JobController::RollBack(const std::vector<CheckpointRow>& rows) {
  // Moved aside, not deleted (a person may want to look at what went wrong),
  // so that replaying those steps saves afresh beside them.
  for (const auto& row : rows) {
    RememberCheckpointState(row.id, "rolled_back");  // never chosen again, from now
    const std::string aside = row.path + ".rolled-back.gen-" + std::to_string(generation_ + 1);
    logbook_->AfterCommit([this, id = row.id, path = row.path, step = row.step, aside] {
      std::error_code ec;
      std::filesystem::rename(path, aside, ec);
      if (ec) log_->warn("cannot move rolled-back {} aside: {}", path, ec.message());
      log_->warn("rolled back over {} (step {})", path, step);
      const std::string moved_to = ec ? "" : aside;
      logbook_->SetCheckpointState(id, "rolled_back", NowMicros(), moved_to);
      boost::asio::post(
          io_, [this, id, moved_to] { RememberCheckpointState(id, "rolled_back", moved_to); });
    });
  }
}

void JobController::MarkCorrupt(const std::string& path) {
  if (!bad_checkpoints_.insert(path).second) return;
  ++fallbacks_;
  std::vector<int64_t> ids;
  for (const auto& row : checkpoints_) {
    if (row.path == path) ids.push_back(row.id);
  }
  for (int64_t id : ids) SetCheckpointState(id, "corrupt");
}

json JobController::CorruptDetail(const std::string& path, const std::string& reason,
                                  const std::string& found_by) const {
  return json{{"checkpoint", path},
              {"reason", reason},
              {"found_by", found_by},
              {"fallback", fallbacks_},
              {"max_fallbacks", spec_.checkpoint.max_fallbacks}};
}

void JobController::RecordCorrupt(const std::string& path, const std::string& reason) {
  MarkCorrupt(path);
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = generation_row_ ? std::optional<int64_t>(generation_row_) : std::nullopt;
  ev.time_us = NowMicros();
  ev.kind = "checkpoint_corrupt";
  ev.step = progress_.step;
  ev.detail_json = CorruptDetail(path, reason, "vigild").dump();
  const int64_t event_id = logbook_->AddEvent(ev);
  AddIntervention(event_id, "fallback_to_older_checkpoint", "auto:checkpoints",
                  json{{"skipped", path}, {"fallback", fallbacks_}},
                  "never loaded; the next older checkpoint is tried");
  metrics_->Failures("checkpoint_corrupt").Increment();
  log_->warn("checkpoint {} is corrupt ({}): skipped, never loaded ({} of at most {} fallbacks)",
             path, reason, fallbacks_, spec_.checkpoint.max_fallbacks);
}

int64_t JobController::AddIntervention(std::optional<int64_t> event, const std::string& action,
                                       const std::string& actor, const json& params,
                                       const std::string& outcome) {
  InterventionRow i;
  i.run_id = run_id_;
  i.event_id = event;
  i.time_us = NowMicros();
  i.action = action;
  i.actor = actor;
  i.params_json = params.dump();
  i.outcome = outcome;
  const int64_t id = logbook_->AddIntervention(i);
  metrics_->Interventions(action).Increment();
  return id;
}

void JobController::Page(std::optional<int64_t> event, const std::string& actor,
                         const std::string& why) {
  AddIntervention(event, "page", actor, json::object(), why);
  metrics_->pages_total.Increment();
  log_->error("PAGE: {}", why);
}

void JobController::Pause(std::optional<int64_t> event, const std::string& why) {
  paused_event_ = event;
  progress_.message =
      "paused: " + why + ". Continue with `vigil resume --workdir " + paths_.workdir + "`";
  metrics_->pages_total.Increment();
  metrics_->waiting_for_human.Set(1);
  logbook_->SetRunStatus(run_id_, "paused");
  log_->error("PAGE: {}", progress_.message);
  const bool torn_down = state_ == JobState::kRecovering;
  Transition(JobState::kPaused, why);
  if (!torn_down) FinishGeneration("paused: " + why);
  if (!ranks_alive_.empty()) {
    // The ranks are stopped; agents stay, ready for a resume.
    wire::Envelope env;
    env.mutable_kill_generation()->set_generation(static_cast<uint64_t>(generation_));
    env.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
    SendToGeneration(env);
  }
}

Status JobController::Resume(const std::string& actor, const std::string& note) {
  if (state_ != JobState::kPaused)
    return Status::FailedPrecondition(std::string("the job is ") + JobStateName(state_) +
                                      ", not paused");
  if (!ranks_alive_.empty())
    return Status::Unavailable("the paused generation is still being torn down; try again");
  if (auto slot = VacantSlot(); slot && FreeSpares().empty()) {
    return Status::FailedPrecondition(
        VacancyReason(*slot) +
        ": start a vigil-agent for this job on a healthy host (it registers as a spare), "
        "then resume");
  }
  const int64_t id = AddIntervention(paused_event_, "resume", "human:" + actor,
                                     json{{"note", note}}, "resumed by " + actor);
  FillVacancies(paused_event_, "human:" + actor);
  metrics_->waiting_for_human.Set(0);
  logbook_->SetRunStatus(run_id_, "running");
  fallbacks_ = 0;  // a person looked: skip corrupt checkpoints afresh
  progress_.message.clear();
  log_->warn("resumed by {}{}", actor, note.empty() ? "" : ": " + note);
  Launch(id ? std::optional<int64_t>(id) : std::nullopt);
  return Status::Ok();
}

void JobController::ApplyRetention() {
  std::vector<int64_t> steps;
  std::set<int64_t> protect;
  std::map<int64_t, CheckpointRow> by_step;
  for (const auto& row : checkpoints_) {
    if (row.state != "committed" || bad_checkpoints_.count(row.path)) continue;
    steps.push_back(row.step);
    by_step.emplace(row.step, row);  // newest row of a step first
    if (row.path == resumed_from_) protect.insert(row.step);
  }
  for (int64_t step : checkpoint::RetentionVictims(steps, spec_.checkpoint.keep_last,
                                                   spec_.checkpoint.keep_every, protect)) {
    const CheckpointRow& row = by_step.at(step);
    RememberCheckpointState(row.id, "deleting");  // neither resumed from nor chosen again
    AddIntervention(std::nullopt, "delete_checkpoint", "auto:retention",
                    json{{"checkpoint", row.path},
                         {"checkpoint_step", row.step},
                         {"bytes", row.bytes},
                         {"keep_last", spec_.checkpoint.keep_last},
                         {"keep_every", spec_.checkpoint.keep_every}},
                    "ordered");
    logbook_->AfterCommit([this, id = row.id, path = row.path] {
      boost::asio::post(files_, [this, id, path] {
        const Status st = checkpoint::Storage::Default()->RemoveAll(path);
        // A deletion that failed part way may have left a part: never loaded.
        const std::string state = st.ok() ? "deleted" : "delete_failed";
        // Recorded from here, so that a vigild stopping meanwhile records it too.
        logbook_->SetCheckpointState(id, state, NowMicros());
        if (st.ok()) {
          log_->info("retention: deleted {}", path);
        } else {
          log_->warn("retention: could not delete {}: {}; it is never resumed from", path,
                     st.ToString());
        }
        boost::asio::post(io_, [this, id, state] { RememberCheckpointState(id, state); });
      });
    });
  }
}

void JobController::FinishFileWork() { files_.join(); }

void JobController::OnCheckpointFailed(const wire::RankReport& r) {
  // Every rank whose shard failed says why (a full disk fails them all): one event per save.
  if (!failed_saves_.insert({generation_, static_cast<int64_t>(r.step())}).second) return;
  const int rank = static_cast<int>(r.rank());
  Failure f;
  f.kind = "checkpoint_write_failed";
  f.rank = rank;
  f.agent = AgentOfRank(rank);
  f.anomaly_step = static_cast<int64_t>(r.step());
  f.detail = json{{"reason", r.message()}, {"step", r.step()}};
  // A fault chaos sent (disk-full) waits for the next save: no detection latency to speak of.
  if (auto sent = TakeInjectedAt(rank)) f.detail["fault_injected_at_us"] = *sent;
  f.summary = "the checkpoint of step " + std::to_string(r.step()) + " failed on rank " +
              std::to_string(rank) + ": " + r.message() + "; older checkpoints are intact";
  if (state_ == JobState::kRunning) return HandleFailure(std::move(f));
  // The generation that failed to save is being replaced or stopped already.
  AddIntervention(
      RecordEvent(f), "none", "auto:state", json::object(),
      std::string("the job is ") + (state_ == JobState::kPaused ? "paused" : "recovering"));
}

void JobController::Launch(std::optional<int64_t> cause_intervention) {
  // A host lost while the last generation was torn down leaves its slot vacant.
  if (auto slot = VacantSlot(); slot && !FillVacancies(last_event_, "auto:placement")) {
    AddIntervention(last_event_, "pause_and_page", "auto:placement", json{{"slot", *slot}},
                    VacancyReason(*slot));
    return Pause(last_event_, VacancyReason(*slot));
  }
  const Choice choice = ChooseCheckpoint();
  if (choice.pause) {
    AddIntervention(last_event_, "pause_and_page", "auto:checkpoints",
                    json{{"fallbacks", fallbacks_}}, choice.why);
    return Pause(last_event_, choice.why);
  }
  RollBack(choice.rolled_back);
  const auto& ckpt = choice.checkpoint;
  if (generation_ >= 0) store_->ErasePrefix("gen-" + std::to_string(generation_) + "/");
  ++generation_;
  first_step_seen_ = false;
  ranks_alive_.clear();
  ranks_succeeded_.clear();
  agents_stopped_.clear();
  rank_errors_.clear();
  nonfinite_.clear();
  rank_progress_.clear();
  chaos_sent_at_us_.clear();  // faults sent to the last generation died with it
  // The running baselines belong to where training is: a resume goes back in steps.
  recent_losses_.clear();
  recent_grad_norms_.clear();
  compute_seconds_.clear();
  straggler_strikes_.clear();
  hang_.reset();
  hang_timer_.cancel();
  resumed_from_ = ckpt ? ckpt->path : "";
  // The playbook's modifiers for this generation.
  const int64_t resume_step = ckpt ? ckpt->step : 0;
  int64_t skip = next_.skip_batches, skip_at = resume_step;
  if (skip > 0 && next_.skip_end_step) skip_at = std::max(resume_step, *next_.skip_end_step - skip);
  const double lr_scale = next_.scale_lr > 0 ? next_.scale_lr * choice.lr_scale : 0.0;
  next_ = NextLaunch{};

  GenerationRow g;
  g.run_id = run_id_;
  g.number = generation_;
  g.world_size = world_size();
  generation_agents_ = slots_;
  for (size_t i = 0; i < slots_.size(); ++i)
    g.hosts += (i ? "," : "") + agents_->agent_host(slots_[i]);
  if (ckpt) g.resumed_from_step = ckpt->step;
  g.resumed_from_path = resumed_from_;
  g.cause_intervention_id = cause_intervention;
  g.started_at_us = NowMicros();
  generation_row_ = logbook_->StartGeneration(g);
  goodput_.GenerationStarted(resumed_from_);

  const int rph = spec_.world.ranks_per_host;
  for (int a = 0; a < static_cast<int>(slots_.size()); ++a) {
    wire::Envelope env;
    auto* l = env.mutable_launch_ranks();
    l->set_generation(static_cast<uint64_t>(generation_));
    l->set_world_size(static_cast<uint32_t>(world_size()));
    if (batch_per_rank_ > 0) l->set_batch_per_rank(static_cast<uint32_t>(batch_per_rank_));
    for (int r = a * rph; r < (a + 1) * rph; ++r) {
      l->add_ranks(static_cast<uint32_t>(r));
      ranks_alive_.insert(r);
    }
    l->set_store_address(paths_.store_address);
    l->set_resume_from(resumed_from_);
    l->set_job_file(paths_.job_file);
    l->set_workdir(paths_.workdir);
    l->set_log_dir(paths_.log_dir);
    l->set_checkpoint_dir(paths_.checkpoint_dir);
    l->set_optimizer(optimizer_override_);
    if (lr_scale > 0) l->set_lr_scale(lr_scale);
    if (skip > 0) {
      l->set_skip_batches(static_cast<uint32_t>(skip));
      l->set_skip_at_step(static_cast<uint64_t>(skip_at));
    }
    agents_->SendToAgent(slots_[static_cast<size_t>(a)], env);
  }
  progress_.generation = generation_;
  progress_.live_ranks = static_cast<int>(ranks_alive_.size());
  metrics_->generation.Set(static_cast<double>(generation_));
  metrics_->live_ranks.Set(progress_.live_ranks);
  start_timer_.expires_after(std::chrono::milliseconds(spec_.limits.start_timeout_ms));
  const int64_t gen = generation_;
  start_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || generation_ != gen || first_step_seen_ || state_ != JobState::kRendezvous) return;
    Failure f;
    f.kind = "start_timeout";
    f.detail = json{{"generation", gen}, {"start_timeout_ms", spec_.limits.start_timeout_ms}};
    f.summary = "generation " + std::to_string(gen) + " did not reach its first step within " +
                std::to_string(spec_.limits.start_timeout_ms) + " ms";
    HandleFailure(std::move(f));
  });
  Transition(JobState::kRendezvous,
             "generation " + std::to_string(generation_) + " launched " +
                 (ckpt ? "from " + resumed_from_ : std::string("from scratch")));
}

void JobController::DamageNewestCheckpoint(ChaosFault& f) {
  f.fired = true;
  std::string target;
  for (const auto& row : checkpoints_) {
    if (row.state == "committed" && !bad_checkpoints_.count(row.path)) {
      target = row.path;
      break;
    }
  }
  Status st = target.empty() ? Status::NotFound("no committed checkpoint to damage")
                             : DamageCheckpoint(target, f.how);
  const std::string outcome = st.ok() ? "checkpoint damaged" : "not injected: " + st.message();
  AddIntervention(std::nullopt, "inject_fault", "chaos",
                  json{{"fault", f.spec}, {"checkpoint", target}, {"damage", f.how}}, outcome);
  log_->warn("chaos: {} {} ({})", f.how, target, outcome);
}

void JobController::MaybeInjectChaos(const wire::RankReport& report) {
  for (auto& f : chaos_) {
    if (f.fired || static_cast<int64_t>(report.step()) < f.step) continue;
    if (f.kind == "corrupt-checkpoint" && report.rank() == 0) DamageNewestCheckpoint(f);
    if (IsHostFault(f.kind) && f.rank == static_cast<int>(report.rank())) {
      f.fired = true;
      const int agent = AgentOfRank(f.rank);
      AddIntervention(std::nullopt, "inject_fault", "chaos",
                      json{{"fault", f.spec},
                           {"rank", f.rank},
                           {"host", agents_->agent_host(agent)},
                           {"at_step", report.step()}},
                      "sent to the agent");
      log_->warn("chaos: {} on {} at step {}", f.spec, agents_->agent_host(agent), report.step());
      wire::Envelope env;
      auto* inj = env.mutable_inject_fault();
      inj->set_kind(f.kind == "xid" ? wire::InjectFault::XID : wire::InjectFault::KILL_AGENT);
      inj->set_generation(static_cast<uint64_t>(generation_));
      inj->set_rank(static_cast<uint32_t>(f.rank));
      inj->set_xid(static_cast<uint32_t>(f.xid));
      inj->set_reason("chaos " + f.spec);
      agents_->SendToAgent(agent, env);
      if (f.kind == "xid") chaos_sent_at_us_[f.rank] = NowMicros();
      if (f.kind == "kill-agent") agent_chaos_at_us_[agent] = NowMicros();
      continue;
    }
    const int sig = ChaosSignal(f.kind);
    if (!sig || f.rank != static_cast<int>(report.rank())) continue;
    f.fired = true;
    AddIntervention(std::nullopt, "inject_fault", "chaos",
                    json{{"fault", f.spec},
                         {"rank", f.rank},
                         {"at_step", report.step()},
                         {"signal", sigabbrev_np(sig) ? sigabbrev_np(sig) : ""}},
                    "signal sent");
    log_->warn("chaos: {} rank {} at step {} ({})", f.kind, f.rank, report.step(), f.spec);
    wire::Envelope env;
    auto* s = env.mutable_signal_rank();
    s->set_generation(static_cast<uint64_t>(generation_));
    s->set_rank(static_cast<uint32_t>(f.rank));
    s->set_signal(sig);
    s->set_reason("chaos " + f.spec);
    agents_->SendToAgent(AgentOfRank(f.rank), env);
    if (sig != SIGKILL) chaos_sent_at_us_[f.rank] = NowMicros();
  }
}

Status JobController::InjectChaos(const std::string& spec, const std::string& actor) {
  auto f = ParseChaosFault(spec);
  if (!f.ok()) return f.status();
  if ((ChaosSignal(f->kind) || IsHostFault(f->kind)) && f->rank >= world_size())
    return Status::InvalidArgument("rank " + std::to_string(f->rank) + " is outside the world of " +
                                   std::to_string(world_size()) + " ranks");
  if (state_ != JobState::kRunning && state_ != JobState::kRendezvous)
    return Status::FailedPrecondition(std::string("the job is ") + JobStateName(state_));
  log_->warn("chaos from {}: {}", actor, spec);
  chaos_.push_back(f.value());
  return Status::Ok();
}

void JobController::OnRankReport(int /*agent*/, const wire::RankReport& r) {
  if (static_cast<int64_t>(r.generation()) != generation_ || terminal()) return;
  switch (r.kind()) {
    case wire::RankReport::STEP: {
      // Steps that were in flight when the generation was condemned detect nothing more.
      if (state_ == JobState::kRecovering || state_ == JobState::kPaused) break;
      if (!first_step_seen_) {
        first_step_seen_ = true;
        logbook_->MarkGenerationFirstStep(generation_row_, r.at_us());
        goodput_.FirstStep(r.at_us());
        if (failure_at_us_ && !recovering_from_.empty()) {
          metrics_->ObserveRecovery(recovering_from_,
                                    static_cast<double>(r.at_us() - *failure_at_us_) / 1e6);
        }
        failure_at_us_.reset();
        recovering_from_.clear();
        fallbacks_ = 0;  // this generation restored: a later recovery starts counting afresh
        for (int rank : ranks_alive_) rank_progress_[rank].last_us = NowMicros();
        Transition(JobState::kRunning, "generation " + std::to_string(generation_) +
                                           " reached step " + std::to_string(r.step()));
      }
      if (r.rank() == 0) {
        progress_.step = static_cast<int64_t>(r.step());
        progress_.loss = r.loss();
        progress_.tokens_per_second = r.tokens_per_second();
        metrics_->step.Set(static_cast<double>(r.step()));
        metrics_->last_step_timestamp.Set(static_cast<double>(r.at_us()) / 1e6);
        metrics_->tokens_trained.Increment(static_cast<double>(spec_.global_batch()) *
                                           spec_.model.seq_len);
        if (metrics_->peak_flops.Value() > 0) {
          metrics_->mfu.Set(r.tokens_per_second() * metrics_->model_flops_per_token.Value() /
                            metrics_->peak_flops.Value());
        }
        metrics_->loss.Set(r.loss());
        metrics_->learning_rate.Set(r.lr());
        metrics_->grad_norm.Set(r.grad_norm());
        metrics_->tokens_per_second.Set(r.tokens_per_second());
        metrics_->tokens_seen.Set(static_cast<double>(r.tokens_seen()));
        metrics_->step_seconds.Observe(r.step_seconds());
        metrics_->moe_aux_loss.Set(r.aux_loss());
        // The training curve: every step of a run up to kCurvePoints steps
        // long, a stride of them beyond, and each generation's first.
        const int64_t stride = std::max<int64_t>(1, spec_.schedule.steps / kCurvePoints);
        if (curve_generation_row_ != generation_row_ ||
            static_cast<int64_t>(r.step()) % stride == 0) {
          curve_generation_row_ = generation_row_;
          StepRow row;
          row.run_id = run_id_;
          row.generation_id = generation_row_;
          row.step = static_cast<int64_t>(r.step());
          row.time_us = r.at_us();
          row.loss = r.loss();
          row.lr = r.lr();
          row.grad_norm = r.grad_norm();
          row.tokens_per_second = r.tokens_per_second();
          row.step_seconds = r.step_seconds();
          logbook_->AddStep(row);
        }
      }
      metrics_->moe_dropped_choices.Increment(static_cast<double>(r.dropped_choices()));
      {
        auto& p = rank_progress_[static_cast<int>(r.rank())];
        p.last_us = NowMicros();
        p.step = static_cast<int64_t>(r.step());
        p.saving = false;
      }
      if (r.rank() == 0) {
        recent_step_seconds_.push_back(r.step_seconds());
        if (recent_step_seconds_.size() > 50) recent_step_seconds_.pop_front();
        CheckNumerics(r);
        if (state_ != JobState::kRunning) break;  // the playbook acted on it
      }
      CheckStragglers(r);
      if (state_ != JobState::kRunning) break;
      MaybeInjectChaos(r);
      break;
    }
    case wire::RankReport::SAVING: {
      auto& p = rank_progress_[static_cast<int>(r.rank())];
      p.last_us = NowMicros();
      p.saving = true;
      break;
    }
    case wire::RankReport::NONFINITE:
      // Its exit (code 5) follows; that is the detection.
      nonfinite_[static_cast<int>(r.rank())] = r;
      break;
    case wire::RankReport::CHECKPOINT: {
      CheckpointRow c;
      c.run_id = run_id_;
      c.generation_id = generation_row_;
      c.step = static_cast<int64_t>(r.step());
      c.path = r.checkpoint_path();
      c.bytes = static_cast<int64_t>(r.checkpoint_bytes());
      c.committed_at_us = r.at_us();
      // A step saved again (after a fallback) replaces a damaged copy at that path.
      bad_checkpoints_.erase(c.path);
      c.id = logbook_->AddCheckpoint(c);
      // Newest first (by step, then by id), as ChooseCheckpoint and retention read them.
      checkpoints_.insert(std::find_if(checkpoints_.begin(), checkpoints_.end(),
                                       [&](const CheckpointRow& o) { return o.step <= c.step; }),
                          c);
      metrics_->checkpoints_total.Increment();
      metrics_->last_checkpoint_step.Set(static_cast<double>(c.step));
      metrics_->last_checkpoint_timestamp.Set(static_cast<double>(c.committed_at_us) / 1e6);
      metrics_->checkpoint_size_bytes.Set(static_cast<double>(c.bytes));
      metrics_->checkpoint_written_bytes.Increment(static_cast<double>(c.bytes));
      if (r.save_seconds() > 0) metrics_->checkpoint_save_seconds.Observe(r.save_seconds());
      goodput_.CheckpointCommitted(c.path, c.committed_at_us);
      ApplyRetention();
      MaybeRegrow(c.step);
      break;
    }
    case wire::RankReport::CHECKPOINT_FAILED:
      OnCheckpointFailed(r);
      break;
    case wire::RankReport::STARTED:
      // Restart-time changes the rank applied (optimizer switch, LR scale).
      if (r.rank() == 0 && !r.message().empty()) {
        log_->warn("generation {} resumes with changes: {}", generation_, r.message());
      }
      break;
    case wire::RankReport::FINISHED:
      if (r.rank() == 0) {
        progress_.params_digest = r.params_digest();
        final_loss_ = r.loss();
        final_tokens_ = static_cast<int64_t>(r.tokens_seen());
      }
      break;
    case wire::RankReport::ERROR:
      // A refused checkpoint is marked when the rank's exit (code 4) arrives.
      rank_errors_[static_cast<int>(r.rank())] = r.message();
      break;
    default:
      break;
  }
}

namespace {

double Median(std::deque<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + static_cast<long>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

}  // namespace

std::optional<int64_t> JobController::TakeInjectedAt(std::optional<int> rank) {
  auto it = rank ? chaos_sent_at_us_.find(*rank) : chaos_sent_at_us_.begin();
  if (it == chaos_sent_at_us_.end()) return std::nullopt;
  const int64_t at = it->second;
  chaos_sent_at_us_.erase(it);
  return at;
}

void JobController::NoteDetectionLatency(const std::string& kind, json* detail,
                                         std::optional<int64_t> injected_at, int64_t detected_at) {
  if (injected_at) {
    (*detail)["fault_injected_at_us"] = *injected_at;
    (*detail)["detection_latency_ms"] = static_cast<double>(detected_at - *injected_at) / 1000.0;
    metrics_->ObserveDetection(kind, static_cast<double>(detected_at - *injected_at) / 1e6);
  }
  failure_at_us_ = injected_at ? *injected_at : detected_at;
}

void JobController::CheckNumerics(const wire::RankReport& r) {
  const auto& d = spec_.detection;
  const double loss = r.loss(), norm = r.grad_norm();
  const size_t window = static_cast<size_t>(d.spike_window);
  Failure f;
  if (recent_losses_.size() >= window) {
    const double loss_median = Median(recent_losses_), norm_median = Median(recent_grad_norms_);
    if (loss > d.loss_spike_factor * loss_median) {
      f.kind = "loss_spike";
      f.detail = json{{"loss", loss},
                      {"running_median", loss_median},
                      {"factor", loss / loss_median},
                      {"threshold", d.loss_spike_factor},
                      {"window", d.spike_window}};
      f.summary = "loss " + std::to_string(loss) + " at step " + std::to_string(r.step()) + " is " +
                  std::to_string(loss / loss_median) + "x its running median";
    } else if (norm_median > 0 && norm > d.grad_norm_spike_factor * norm_median) {
      f.kind = "grad_norm_spike";
      f.detail = json{{"grad_norm", norm},
                      {"running_median", norm_median},
                      {"factor", norm / norm_median},
                      {"threshold", d.grad_norm_spike_factor},
                      {"window", d.spike_window}};
      f.summary = "gradient norm " + std::to_string(norm) + " at step " + std::to_string(r.step()) +
                  " is " + std::to_string(norm / norm_median) + "x its running median";
    }
  }
  recent_losses_.push_back(loss);
  recent_grad_norms_.push_back(norm);
  while (recent_losses_.size() > window) recent_losses_.pop_front();
  while (recent_grad_norms_.size() > window) recent_grad_norms_.pop_front();
  if (f.kind.empty()) return;
  // One detection per spike: the baselines fill again before the next.
  recent_losses_.clear();
  recent_grad_norms_.clear();
  // The update of step r.step() is in every checkpoint from that step on.
  f.anomaly_step = static_cast<int64_t>(r.step());
  f.detail["step"] = r.step();
  NoteDetectionLatency(f.kind, &f.detail, TakeInjectedAt(std::nullopt), NowMicros());
  HandleFailure(std::move(f));
}

void JobController::CheckStragglers(const wire::RankReport& r) {
  if (r.compute_seconds() <= 0) return;  // a backend that cannot tell
  const auto& d = spec_.detection;
  const size_t window = static_cast<size_t>(d.straggler_window);
  auto& mine = compute_seconds_[static_cast<int>(r.rank())];
  mine.push_back(r.compute_seconds());
  while (mine.size() > window) mine.pop_front();
  // Judged once per window, on rank 0's report.
  if (r.rank() != 0 || r.step() % window != 0 || ranks_alive_.size() < 2) return;
  std::map<int, double> medians;
  std::vector<double> all;
  for (int rank : ranks_alive_) {
    const auto& w = compute_seconds_[rank];
    if (w.size() < window) return;
    medians[rank] = Median(w);
    all.push_back(medians[rank]);
  }
  // The lower median: with two ranks, the faster one is the baseline.
  std::sort(all.begin(), all.end());
  const double baseline = all[(all.size() - 1) / 2];
  for (const auto& [rank, median] : medians) {
    int& strikes = straggler_strikes_[rank];
    strikes = median > d.straggler_factor * baseline ? strikes + 1 : 0;
    if (strikes != 2) continue;  // two windows running, reported once
    Failure f;
    f.kind = "straggler";
    f.rank = rank;
    f.agent = AgentOfRank(rank);
    f.detail = json{{"compute_median_ms", median * 1000.0}, {"peer_median_ms", baseline * 1000.0},
                    {"factor", median / baseline},          {"threshold", d.straggler_factor},
                    {"window", d.straggler_window},         {"step", r.step()}};
    char what[160];
    std::snprintf(what, sizeof(what),
                  "rank %d computes %.1f ms a step, %.1fx the median rank's %.1f ms, over the "
                  "last %d steps twice running",
                  rank, median * 1000.0, median / baseline, baseline * 1000.0, d.straggler_window);
    f.summary = what;
    NoteDetectionLatency(f.kind, &f.detail, TakeInjectedAt(rank), NowMicros());
    return HandleFailure(std::move(f));
  }
}

void JobController::UpdateRankMetrics(int64_t now_us) {
  std::map<std::string, int> n;
  for (int rank = 0; rank < world_size(); ++rank) {
    const auto p = rank_progress_.find(rank);
    if (!ranks_alive_.count(rank)) {
      ++n["down"];
    } else if (p == rank_progress_.end() || !first_step_seen_) {
      ++n["starting"];
    } else {
      ++n[p->second.saving ? "saving" : "training"];
    }
  }
  metrics_->SetRanks(n);
  metrics_->productive_seconds.Set(goodput_.ProductiveSeconds(now_us));
  metrics_->goodput.Set(goodput_.Goodput(now_us));
}

void JobController::OnTick() {
  const int64_t now_us = NowMicros();
  if (now_us - metrics_updated_us_ >= 1000000) {
    metrics_updated_us_ = now_us;
    UpdateRankMetrics(now_us);
  }
  if (state_ != JobState::kRunning || hang_ || held_) return;
  const auto& d = spec_.detection;
  const double median_ms = Median(recent_step_seconds_) * 1000.0;
  const double timeout_ms = std::max<double>(d.hang_floor_ms, d.hang_factor * median_ms);
  const int64_t now = NowMicros();
  for (int rank : ranks_alive_) {
    auto it = rank_progress_.find(rank);
    if (it == rank_progress_.end()) continue;
    const double limit = it->second.saving ? d.save_timeout_ms : timeout_ms;
    if (static_cast<double>(now - it->second.last_us) / 1000.0 > limit)
      return DeclareHang(now, timeout_ms);
  }
}

void JobController::DeclareHang(int64_t now_us, double timeout_ms) {
  hang_ = HangProbe{};
  hang_->detected_us = now_us;
  hang_->timeout_ms = timeout_ms;
  hang_->median_ms = Median(recent_step_seconds_) * 1000.0;
  log_->warn("generation {} made no progress for {:.0f} ms: asking the agents what its ranks do",
             generation_, timeout_ms);
  wire::Envelope env;
  env.mutable_diagnose_ranks()->set_generation(static_cast<uint64_t>(generation_));
  env.mutable_diagnose_ranks()->set_reason("no progress");
  SendToGeneration(env);
  // An agent that does not answer is a detection of its own (host lost);
  // the hang is declared with what the others said.
  hang_timer_.expires_after(std::chrono::milliseconds(1000));
  const int64_t gen = generation_;
  hang_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (!ec && hang_ && generation_ == gen) FinishHang();
  });
}

void JobController::OnDiagnosis(int agent, const wire::Diagnosis& d) {
  if (!hang_ || static_cast<int64_t>(d.generation()) != generation_) return;
  hang_->agents_answered.insert(agent);
  for (const auto& r : d.ranks()) hang_->ranks[static_cast<int>(r.rank())] = r;
  for (int a : generation_agents_) {
    if (agents_->agent_connected(a) && !hang_->agents_answered.count(a)) return;
  }
  FinishHang();
}

void JobController::FinishHang() {
  HangProbe probe = std::move(*hang_);
  hang_timer_.cancel();
  // The rank that hangs: one stopped (T, t) or stuck in the kernel (D);
  // else one running (R) while its peers sleep in collectives; else the
  // one furthest behind.
  std::optional<int> suspect;
  std::string reason;
  for (const char* states : {"Tt", "D", "R"}) {
    for (const auto& [rank, diag] : probe.ranks) {
      if (!suspect && !diag.state().empty() &&
          std::string(states).find(diag.state()[0]) != std::string::npos) {
        suspect = rank;
        reason = "process state " + diag.state();
      }
    }
  }
  json ranks = json::object();
  int64_t lowest = INT64_MAX;
  for (int rank : ranks_alive_) {
    const auto& p = rank_progress_[rank];
    json j{{"last_step", p.step},
           {"silent_ms", static_cast<double>(probe.detected_us - p.last_us) / 1000.0},
           {"saving", p.saving}};
    if (probe.ranks.count(rank)) {
      const auto& diag = probe.ranks[rank];
      j["pid"] = diag.pid();
      j["state"] = diag.state();
      j["wchan"] = diag.wchan();
      j["stack_file"] = diag.stack_file();
    }
    ranks[std::to_string(rank)] = j;
    if (!suspect && p.step < lowest) lowest = p.step;
  }
  if (!suspect && lowest != INT64_MAX) {
    int behind = 0;
    std::optional<int> only;
    for (int rank : ranks_alive_) {
      if (rank_progress_[rank].step == lowest) {
        ++behind;
        only = rank;
      }
    }
    if (behind == 1) {
      suspect = only;
      reason = "furthest behind (step " + std::to_string(lowest) + ")";
    }
  }
  Failure f;
  f.kind = "rank_hang";
  f.rank = suspect;
  if (suspect) f.agent = AgentOfRank(*suspect);
  f.detail = json{{"timeout_ms", probe.timeout_ms},
                  {"median_step_ms", probe.median_ms},
                  {"hang_factor", spec_.detection.hang_factor},
                  {"hang_floor_ms", spec_.detection.hang_floor_ms},
                  {"detected_at_us", probe.detected_us},
                  {"ranks", ranks},
                  {"suspect", suspect ? json(*suspect) : json(nullptr)},
                  {"suspect_reason", reason}};
  if (suspect && probe.ranks.count(*suspect))
    f.detail["stack_file"] = probe.ranks[*suspect].stack_file();
  NoteDetectionLatency(f.kind, &f.detail, TakeInjectedAt(suspect), probe.detected_us);
  char timeout[32];
  std::snprintf(timeout, sizeof(timeout), "%.0f", probe.timeout_ms);
  f.summary = "generation " + std::to_string(generation_) + " made no progress for " + timeout +
              " ms; " +
              (suspect ? "rank " + std::to_string(*suspect) + " hangs (" + reason + ")"
                       : std::string("no single rank stands out"));
  HandleFailure(std::move(f));
}

void JobController::OnRankExited(int agent, const wire::RankExited& e) {
  if (static_cast<int64_t>(e.generation()) != generation_) return;
  const int rank = static_cast<int>(e.rank());
  ranks_alive_.erase(rank);
  progress_.live_ranks = static_cast<int>(ranks_alive_.size());
  metrics_->live_ranks.Set(progress_.live_ranks);
  if (state_ == JobState::kRecovering || state_ == JobState::kPaused || terminal()) {
    // A consequence of the teardown (or of the failure being handled): not a new detection.
    log_->info("rank {} of generation {} gone during teardown (code {}, signal {})", rank,
               generation_, e.exit_code(), e.signal());
    return;
  }
  if (e.signal() == 0 && e.exit_code() == 0) {
    ranks_succeeded_.insert(rank);
    if (static_cast<int>(ranks_succeeded_.size()) == world_size()) {
      Finish(Outcome::kSucceeded,
             "all " + std::to_string(ranks_succeeded_.size()) + " ranks finished");
    }
    return;
  }
  // Exit codes from vigil-train's contract (see worker/trainer/train_main.cc).
  std::string kind = "process_exit";
  if (e.signal() == 0 && e.exit_code() == 5) kind = "nonfinite";
  if (e.signal() == 0 && e.exit_code() == 4) kind = "checkpoint_corrupt";
  if (e.signal() == 0 && e.exit_code() == 3) kind = "collective_error";
  if (e.signal() == 0 && e.exit_code() == 2) kind = "config_error";

  json detail{{"pid", e.pid()}, {"exited_at_us", e.exited_at_us()}, {"generation", generation_}};
  if (e.signal() != 0) {
    detail["signal"] = e.signal();
    detail["signal_name"] = sigabbrev_np(e.signal()) ? sigabbrev_np(e.signal()) : "";
  } else {
    detail["exit_code"] = e.exit_code();
  }
  if (rank_errors_.count(rank)) detail["message"] = rank_errors_[rank];
  if (kind == "checkpoint_corrupt" && !resumed_from_.empty()) {
    // The ranks verify every byte they load; all of them refuse together.
    MarkCorrupt(resumed_from_);
    // Every rank refuses; the ones whose own part failed say which shard and tensor.
    json errors = json::object();
    std::string reason = rank_errors_.count(rank) ? rank_errors_[rank] : "", found_by;
    for (const auto& [r, message] : rank_errors_) {
      errors[std::to_string(r)] = message;
      // A rank that only heard of another's failure says "rank N could not verify its part".
      if (found_by.empty() && message.find("could not verify its part") == std::string::npos) {
        reason = message;
        found_by = "rank " + std::to_string(r);
      }
    }
    detail.update(CorruptDetail(resumed_from_, reason,
                                found_by.empty() ? "rank " + std::to_string(rank) : found_by));
    detail["rank_errors"] = errors;
  }
  if (e.signal_sent_at_us() > 0) {
    chaos_sent_at_us_.erase(rank);
    NoteDetectionLatency(kind, &detail, e.signal_sent_at_us(), NowMicros());
  } else {
    failure_at_us_ = e.exited_at_us();
  }
  Failure f;
  f.kind = kind;
  f.agent = agent;
  f.rank = rank;
  f.codes = {e.signal() ? 128 + e.signal() : e.exit_code()};
  f.summary = "rank " + std::to_string(rank) + " on " + agents_->agent_host(agent) +
              (e.signal() ? " killed by signal " + std::to_string(e.signal())
                          : " exited with code " + std::to_string(e.exit_code()));
  if (kind == "nonfinite" && nonfinite_.count(rank)) {
    // The ranks refused the update; the checkpoints from its step on are suspect.
    const auto& r = nonfinite_[rank];
    f.anomaly_step = static_cast<int64_t>(r.step());
    detail["loss"] = r.loss();
    detail["grad_norm"] = std::isfinite(r.grad_norm()) ? json(r.grad_norm()) : json("non-finite");
    detail["step"] = r.step();
    f.summary = "rank " + std::to_string(rank) + ": " + r.message();
    // The NaN travelled through the all-reduce: which rank it came from is unknowable here.
    NoteDetectionLatency(kind, &detail, TakeInjectedAt(std::nullopt), NowMicros());
  }
  f.detail = detail;
  if (kind != "collective_error") return HandleFailure(std::move(f));

  // When a rank or host dies, its peers' collectives fail too, and their
  // exits can reach us before the death itself (a lost host is noticed when
  // its connection drops, a peer's reaping takes a moment). Hold the first
  // collective error briefly; a root cause arriving meanwhile is recorded
  // instead, and the held symptom is dropped.
  if (held_) return;
  held_ = std::move(f);
  settle_timer_.expires_after(std::chrono::milliseconds(spec_.limits.failure_settle_ms));
  const int64_t gen = generation_;
  settle_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || !held_ || generation_ != gen || state_ == JobState::kRecovering || terminal()) return;
    Failure held = std::move(*held_);
    held_.reset();
    HandleFailure(std::move(held));
  });
}

void JobController::HandleFailure(Failure f) {
  // A corrupt checkpoint is the checkpoint machinery's (below), the rest the playbook's.
  const bool corrupt = f.kind == "checkpoint_corrupt";
  const Decision decision = corrupt ? Decision{} : Decide(f);
  // What stops the generation supersedes a held symptom (or is that symptom);
  // what training goes on through (a straggler, a failed save) leaves it be.
  if (corrupt || decision.outcome().name != "continue") {
    if (held_ && held_->summary != f.summary) {
      log_->info("dropping the held symptom ({}) in favour of its cause", held_->summary);
    }
    held_.reset();
    settle_timer_.cancel();
    hang_.reset();
    hang_timer_.cancel();
  }
  const int64_t event_id = RecordEvent(f);
  last_event_ = event_id;
  const std::string host = f.agent >= 0 ? agents_->agent_host(f.agent) : "";

  // A corrupt checkpoint costs a fallback to an older one (checkpoint.max_fallbacks
  // bounds them), not a restart: the checkpoint machinery's, not the playbook's.
  if (corrupt) {
    const Choice choice = ChooseCheckpoint();
    if (choice.pause) {
      AddIntervention(event_id, "pause_and_page", "auto:checkpoints",
                      json{{"fallbacks", fallbacks_}}, choice.why);
      return Pause(event_id, f.summary + "; " + choice.why);
    }
    const auto& ckpt = choice.checkpoint;
    pending_intervention_ =
        AddIntervention(event_id, "fallback_to_older_checkpoint", "auto:checkpoints",
                        json{{"checkpoint", ckpt ? ckpt->path : ""},
                             {"checkpoint_step", ckpt ? ckpt->step : 0},
                             {"next_generation", generation_ + 1}},
                        "ordered");
    metrics_->Restarts(f.kind).Increment();
    recovering_from_ = f.kind;
    return TearDownGeneration(f.summary);
  }

  const std::string actor = "auto:" + (decision.rule.empty() ? "fallback" : decision.rule);
  std::string outcome = decision.outcome().name;
  std::string why = decision.why;
  if (decision.restarts() && progress_.restarts >= spec_.limits.max_restarts) {
    outcome = "fail_job";
    why = "restart limit reached (limits.max_restarts " +
          std::to_string(spec_.limits.max_restarts) + ")";
  }
  log_->warn("playbook: {} -> {}", why, outcome);
  if (decision.Find("page")) Page(event_id, actor, f.summary);

  if (outcome == "continue") {
    AddIntervention(event_id, "continue_training", actor, json{{"rule", decision.rule}}, why);
    return;
  }
  if (outcome == "fail_job") {
    AddIntervention(event_id, "fail_job", actor,
                    json{{"restarts", progress_.restarts},
                         {"max_restarts", spec_.limits.max_restarts},
                         {"rule", decision.rule}},
                    why);
    Finish(Outcome::kFailed, f.summary + "; " + why);
    return;
  }
  if (outcome == "pause_and_page") {
    AddIntervention(event_id, "pause_and_page", actor, json{{"rule", decision.rule}}, why);
    return Pause(event_id, f.summary + "; " + why);
  }

  // A restart: first the hosts (a cordon, a spare), then the checkpoint, then
  // the modifiers, each one intervention.
  if (decision.Find("cordon_host")) Cordon(event_id, actor, host, f.summary);
  if (decision.Find("use_spare")) FillVacancies(event_id, actor);
  if (decision.Find("shrink_world") && VacantSlot()) ShrinkWorld(event_id, actor);
  if (auto slot = VacantSlot()) {
    const std::string vacancy = VacancyReason(*slot);
    AddIntervention(event_id, "pause_and_page", actor, json{{"slot", *slot}}, vacancy);
    return Pause(event_id, f.summary + "; " + vacancy);
  }
  if (const auto* rb = decision.Find("rollback")) next_.rollback = static_cast<int>(rb->count);
  if (f.anomaly_step) next_.before_step = f.anomaly_step;
  const Choice choice = ChooseCheckpoint();
  if (choice.pause) {
    AddIntervention(event_id, "pause_and_page", actor, json{{"fallbacks", fallbacks_}}, choice.why);
    next_ = NextLaunch{};
    return Pause(event_id, f.summary + "; " + choice.why);
  }
  const auto& ckpt = choice.checkpoint;
  json params{{"checkpoint", ckpt ? ckpt->path : ""},
              {"checkpoint_step", ckpt ? ckpt->step : 0},
              {"next_generation", generation_ + 1}};
  if (outcome == "rollback") {
    params["rollback"] = next_.rollback;
    json over = json::array();
    for (const auto& r : choice.rolled_back) over.push_back(r.step);
    params["rolled_back_steps"] = over;
  }
  pending_intervention_ = AddIntervention(event_id, outcome, actor, params, why);
  for (const auto& action : decision.actions) {
    if (action.name == "skip_batches") {
      next_.skip_batches = action.count;
      next_.skip_end_step = f.anomaly_step;
      AddIntervention(event_id, "skip_batches", actor,
                      json{{"batches", action.count},
                           {"ending_at_step", f.anomaly_step ? json(*f.anomaly_step) : json()}},
                      "ordered");
    } else if (action.name == "scale_lr") {
      next_.scale_lr = action.factor;
      AddIntervention(event_id, "scale_lr", actor,
                      json{{"factor", action.factor},
                           {"from", choice.lr_scale},
                           {"to", choice.lr_scale * action.factor}},
                      "ordered");
    } else if (action.name == "switch_optimizer") {
      optimizer_override_ = action.optimizer;
      AddIntervention(event_id, "switch_optimizer", actor, json{{"to", action.optimizer}},
                      "ordered");
    }
  }
  ++progress_.restarts;
  metrics_->Restarts(f.kind).Increment();
  recovering_from_ = f.kind;
  TearDownGeneration(f.summary);
}

void JobController::TearDownGeneration(const std::string& reason) {
  Transition(JobState::kRecovering, reason);
  FinishGeneration(reason);
  wire::Envelope env;
  env.mutable_kill_generation()->set_generation(static_cast<uint64_t>(generation_));
  env.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
  SendToGeneration(env);
  // Agents confirm with GenerationStopped. One that never does may still
  // have ranks holding the GPUs: rather than launch beside them, the job
  // pauses for a person to look at that host.
  teardown_timer_.expires_after(std::chrono::milliseconds(spec_.limits.kill_grace_ms + 5000));
  const int64_t gen = generation_;
  teardown_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || state_ != JobState::kRecovering || generation_ != gen) return;
    std::string silent;
    int agent = -1;
    for (int a : generation_agents_) {
      if (agents_->agent_connected(a) && !agents_stopped_.count(a)) {
        silent += (silent.empty() ? "" : ", ") + agents_->agent_host(a);
        if (agent < 0) agent = a;
      }
    }
    Failure f;
    f.kind = "host_lost";
    f.agent = agent;
    f.detail = json{{"reason", "teardown not confirmed"}, {"hosts", silent}};
    f.summary = "host(s) " + silent + " did not confirm the teardown of generation " +
                std::to_string(gen) + " within " +
                std::to_string(spec_.limits.kill_grace_ms + 5000) + " ms";
    const auto event_id = RecordEvent(f);
    last_event_ = event_id;
    AddIntervention(event_id, "pause_and_page", "auto:teardown", json{{"hosts", silent}},
                    f.summary);
    pending_intervention_.reset();
    Pause(event_id, f.summary);
  });
}

void JobController::OnGenerationStopped(int agent, uint64_t generation) {
  if (static_cast<int64_t>(generation) != generation_ || state_ != JobState::kRecovering) return;
  agents_stopped_.insert(agent);
  for (int a : generation_agents_) {
    if (agents_->agent_connected(a) && !agents_stopped_.count(a)) return;
  }
  teardown_timer_.cancel();
  auto cause = pending_intervention_;
  pending_intervention_.reset();
  Launch(cause);
}

void JobController::FinishGeneration(const std::string& reason) {
  const int64_t now = NowMicros();
  goodput_.GenerationEnded(now);
  if (generation_row_) logbook_->EndGeneration(generation_row_, now, reason);
}

void JobController::OnAgentLost(int agent, const std::string& why) {
  if (terminal() || state_ == JobState::kPending) return;
  const std::string host = agents_->agent_host(agent);
  UpdateHostMetrics();
  Failure f;
  f.kind = "host_lost";
  f.agent = agent;
  f.detail = json{{"reason", why}};
  f.summary = "host " + host + " lost: " + why;
  std::optional<int64_t> injected;
  if (auto it = agent_chaos_at_us_.find(agent); it != agent_chaos_at_us_.end()) {
    injected = it->second;
    agent_chaos_at_us_.erase(it);
  }
  NoteDetectionLatency(f.kind, &f.detail, injected, NowMicros());
  const bool in_generation = std::find(generation_agents_.begin(), generation_agents_.end(),
                                       agent) != generation_agents_.end();
  if (in_generation) {
    // Its ranks died with it (PR_SET_PDEATHSIG), or are out of reach.
    const int rph = spec_.world.ranks_per_host;
    for (size_t i = 0; i < generation_agents_.size(); ++i) {
      if (generation_agents_[i] != agent) continue;
      for (int r = static_cast<int>(i) * rph; r < static_cast<int>(i + 1) * rph; ++r)
        ranks_alive_.erase(r);
    }
  }
  const bool placed = std::find(slots_.begin(), slots_.end(), agent) != slots_.end();
  if (!placed || state_ == JobState::kPaused) {
    // A spare, or a host of a job that waits for a person anyway: recorded;
    // the vacancy is filled when the job resumes.
    f.detail["spare"] = !placed;
    const auto event_id = RecordEvent(f);
    AddIntervention(
        event_id, placed ? "none" : "continue_training", "auto:placement",
        json{{"spares_free", FreeSpares().size()}},
        placed ? "the job is paused; the slot is filled on resume"
               : "a spare was lost; " + std::to_string(FreeSpares().size()) + " spare(s) free");
    // A teardown waiting for this host's confirmation waits no more.
    if (state_ == JobState::kRecovering) OnGenerationStopped(agent, generation_);
    return;
  }
  if (state_ == JobState::kRecovering) {
    // Lost while its generation was torn down: the restart already ordered
    // goes on, and the launch fills the vacant slot (or pauses).
    const auto event_id = RecordEvent(f);
    AddIntervention(event_id, "none", "auto:placement", json::object(),
                    "a restart is in progress; the launch replaces the host");
    OnGenerationStopped(agent, static_cast<uint64_t>(generation_));
    return;
  }
  HandleFailure(std::move(f));
}

void JobController::OnGpuFault(int agent, const wire::GpuFault& g) {
  if (terminal() || state_ == JobState::kPending) return;
  Failure f;
  f.kind = g.type() == "thermal" ? "gpu_thermal" : "gpu_fault";
  f.agent = agent;
  if (g.rank() >= 0) f.rank = g.rank();
  f.detail = json{{"type", g.type()},       {"source", g.source()},
                  {"gpu", g.gpu()},         {"pci_bus_id", g.pci_bus_id()},
                  {"message", g.message()}, {"generation", g.generation()}};
  // NVML's uncorrectable ECC count rising is what the kernel logs as Xid 48.
  if (g.type() == "ecc") f.codes = {48};
  if (g.xid()) {
    f.codes = {static_cast<int64_t>(g.xid())};
    f.detail["xid"] = g.xid();
    if (const XidInfo* info = LookupXid(static_cast<int>(g.xid()))) {
      f.detail["xid_name"] = info->name;
      f.detail["xid_remedy"] = info->remedy;
    }
  }
  f.summary = "GPU " + std::to_string(g.gpu()) + " of host " + agents_->agent_host(agent) +
              (g.rank() >= 0 ? " (rank " + std::to_string(g.rank()) + ")" : std::string()) + ": " +
              g.message();
  NoteDetectionLatency(f.kind, &f.detail, f.rank ? TakeInjectedAt(f.rank) : std::nullopt,
                       NowMicros());
  if (state_ == JobState::kRunning || state_ == JobState::kRendezvous)
    return HandleFailure(std::move(f));
  // A restart is already under way (the fault's first symptom was likely a
  // rank's crash), or the job waits for a person: the playbook's host
  // actions (cordon, spare) still apply, to the next launch.
  const auto event_id = RecordEvent(f);
  const Decision decision = Decide(f);
  const std::string actor = "auto:" + (decision.rule.empty() ? "fallback" : decision.rule);
  if (decision.Find("cordon_host")) Cordon(event_id, actor, agents_->agent_host(agent), f.summary);
  if (decision.Find("use_spare")) FillVacancies(event_id, actor);
  AddIntervention(event_id, "none", actor, json{{"rule", decision.rule}},
                  state_ == JobState::kPaused
                      ? "the job is paused"
                      : "a restart is in progress; the host actions apply to its launch");
}

Decision JobController::Decide(const Failure& f) {
  Detection d;
  d.kind = f.kind;
  d.host = f.agent >= 0 ? agents_->agent_host(f.agent) : "";
  d.rank = f.rank;
  d.codes = f.codes;
  d.time_us = NowMicros();
  return playbook_.Decide(d);
}

int64_t JobController::RecordEvent(const Failure& f) {
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = generation_row_ ? std::optional<int64_t>(generation_row_) : std::nullopt;
  ev.time_us = NowMicros();
  ev.kind = f.kind;
  ev.host = f.agent >= 0 ? agents_->agent_host(f.agent) : "";
  ev.rank = f.rank;
  ev.step = f.anomaly_step ? *f.anomaly_step : progress_.step;
  ev.detail_json = f.detail.dump();
  const int64_t event_row = logbook_->AddEvent(ev);
  metrics_->Failures(f.kind).Increment();
  log_->warn("detected {}: {}", f.kind, f.summary);
  return event_row;
}

void JobController::Stop(const std::string& why) {
  if (terminal()) return;
  EventRow ev;
  ev.run_id = run_id_;
  ev.time_us = NowMicros();
  ev.kind = "coordinator_stopped";
  ev.step = progress_.step;
  ev.detail_json = json{{"reason", why}}.dump();
  logbook_->AddEvent(ev);
  Finish(Outcome::kFailed, why);
}

void JobController::Finish(Outcome outcome, const std::string& why) {
  teardown_timer_.cancel();
  FinishGeneration(why);
  hang_timer_.cancel();
  metrics_->waiting_for_human.Set(0);
  const bool succeeded = outcome == Outcome::kSucceeded;
  Transition(succeeded ? JobState::kSucceeded : JobState::kFailed, why);
  progress_.message = why;
  const double wall = static_cast<double>(NowMicros() - progress_.started_at_us) / 1e6;
  std::optional<double> tps;
  if (succeeded && wall > 0) tps = static_cast<double>(final_tokens_) / wall;
  logbook_->FinishRun(run_id_, JobStateName(state_), NowMicros(),
                      succeeded ? std::optional<int64_t>(progress_.step) : std::nullopt,
                      succeeded ? std::optional<double>(final_loss_) : std::nullopt,
                      progress_.params_digest, tps);
  for (int a = 0; a < agents_->agent_count(); ++a) {
    wire::Envelope env;
    env.mutable_shutdown()->set_reason(why);
    agents_->SendToAgent(a, env);
  }
  if (on_terminal) on_terminal();
}

}  // namespace vigil::coordinator
