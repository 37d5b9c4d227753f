#include "coordinator/job_controller.h"

#include <algorithm>
#include <cmath>

#include "common/vocabulary.h"
#include "coordinator/detections.h"

namespace vigil::coordinator {

using nlohmann::json;

JobController::JobController(boost::asio::io_context& io, const JobSpec& spec, JobPaths paths,
                             int64_t run_id, ControllerSeams seams, std::vector<ChaosFault> chaos,
                             Playbook playbook)
    : io_(io),
      spec_(spec),
      paths_(std::move(paths)),
      run_id_(run_id),
      clock_(seams.clock),
      journal_(seams.journal),
      agents_(seams.agents),
      store_(seams.store),
      metrics_(seams.metrics),
      log_(MakeLogger("job")),
      machine_(
          [this](JobState from, JobState to, const std::string& why) { OnMove(from, to, why); }),
      placement_(&spec, seams.agents),
      catalog_(io, seams.clock, seams.journal, spec.checkpoint, paths_.checkpoint_dir,
               seams.storage, seams.probe ? seams.probe : ManifestProbe(seams.storage),
               seams.file_work),
      playbook_(std::move(playbook)),
      hangs_(spec.detection),
      numerics_(spec.detection),
      stragglers_(spec.detection),
      settler_(seams.clock, spec.limits.failure_settle_ms,
               [this](Detection d) { HandleFailure(std::move(d)); }),
      chaos_(
          std::move(chaos), seams.clock, seams.agents,
          [this](const PlannedAction& a) {
            AddIntervention(std::nullopt, a.action, "chaos", a.params, a.outcome);
          },
          seams.self_fault
              ? ChaosInjector::SelfFault([this, fault = seams.self_fault](
                                             const ChaosFault& f, std::function<void()> done) {
                  // Write-ahead: the vigild that takes the run over must know it fired.
                  journal_->AfterCommit([this, fault, f, done] {
                    fault(f);
                    boost::asio::post(io_, done);
                  });
                })
              : ChaosInjector::SelfFault()),
      steps_(spec, seams.journal, seams.metrics, run_id, &progress_),
      goodput_(seams.clock->NowMicros()),
      start_timer_(seams.clock->NewTimer()),
      teardown_timer_(seams.clock->NewTimer()),
      hang_timer_(seams.clock->NewTimer()),
      crash_points_(seams.crash_points) {
  // Leaving a state cancels its timers.
  machine_.Bind(start_timer_.get(), {JobState::kRendezvous});
  machine_.Bind(teardown_timer_.get(), {JobState::kRecovering});
  machine_.Bind(hang_timer_.get(), {JobState::kRunning});
  progress_.run_id = run_id;
  progress_.total_steps = spec.schedule.steps;
  progress_.world_size = spec.world.world_size();
  progress_.started_at_us = Now();
  metrics_->total_steps.Set(spec.schedule.steps);
  metrics_->world_size.Set(spec.world.world_size());
  metrics_->SetState(JobStateName(state()));
  metrics_->start_timestamp.Set(static_cast<double>(progress_.started_at_us) / 1e6);
  metrics_->checkpoint_every_steps.Set(spec.checkpoint.every_steps);
  metrics_->model_flops_per_token.Set(spec.model.TrainingFlopsPerToken());
  metrics_->peak_flops.Set(spec.world.peak_tflops_per_rank * 1e12 * spec.world.world_size());
}

JobController::~JobController() { FinishFileWork(); }

void JobController::OnMove(JobState from, JobState to, const std::string& why) {
  log_->info("state {} -> {}: {}", JobStateName(from), JobStateName(to), why);
  progress_.state = to;
  metrics_->SetState(JobStateName(to));
  // A held symptom belongs to the generation that trains; so does a hang probe.
  if (to != JobState::kRendezvous && to != JobState::kRunning) settler_.Drop();
  if (to != JobState::kRunning) hangs_.CancelProbe();
}

// ---- The journal, with the metrics that count its rows.

int64_t JobController::RecordEvent(const Detection& d) {
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = gen_.row ? std::optional<int64_t>(gen_.row) : std::nullopt;
  ev.time_us = d.time_us ? d.time_us : Now();
  ev.kind = d.kind;
  ev.host = d.host;
  ev.rank = d.rank;
  ev.step = d.step ? *d.step : progress_.step;
  json detail = d.detail;
  // What a rule's `codes` match, for a vigild that replays the playbook's history.
  if (!d.codes.empty()) detail["codes"] = d.codes;
  ev.detail_json = detail.dump();
  const int64_t id = journal_->AddEvent(ev);
  metrics_->Failures(d.kind).Increment();
  log_->warn("detected {}: {}", d.kind, d.summary);
  return id;
}

int64_t JobController::AddIntervention(std::optional<int64_t> event, const std::string& action,
                                       const std::string& actor, const json& params,
                                       const std::string& outcome) {
  InterventionRow i;
  i.run_id = run_id_;
  i.event_id = event;
  i.time_us = Now();
  i.action = action;
  i.actor = actor;
  i.params_json = params.dump();
  i.outcome = outcome;
  const int64_t id = journal_->AddIntervention(i);
  metrics_->Interventions(action).Increment();
  if (action == action::kPage) {
    metrics_->pages_total.Increment();
    log_->error("PAGE: {}", outcome);
  }
  return id;
}

std::vector<int64_t> JobController::Record(std::optional<int64_t> event, const std::string& actor,
                                           const std::vector<PlannedAction>& actions) {
  std::vector<int64_t> ids;
  for (const auto& a : actions)
    ids.push_back(AddIntervention(event, a.action, actor, a.params, a.outcome));
  if (on_cordon && event) {
    for (const auto& a : actions) {
      if (a.action == action::kCordonHost)
        on_cordon(*event, a.params.value("host", ""), a.params.value("kind", ""));
    }
  }
  return ids;
}

json JobController::CorruptDetail(const std::string& path, const std::string& reason,
                                  const std::string& found_by) const {
  return json{{"checkpoint", path},
              {"reason", reason},
              {"found_by", found_by},
              {"fallback", catalog_.fallbacks()},
              {"max_fallbacks", spec_.checkpoint.max_fallbacks}};
}

void JobController::RecordCorrupt(const std::string& path, const std::string& reason) {
  const int64_t event_id =
      RecordEvent(kind::kCheckpointCorrupt, CorruptDetail(path, reason, "vigild"));
  AddIntervention(event_id, action::kFallbackToOlderCheckpoint, "auto:checkpoints",
                  json{{"skipped", path}, {"fallback", catalog_.fallbacks()}},
                  "never loaded; the next older checkpoint is tried");
  metrics_->Failures(kind::kCheckpointCorrupt).Increment();
  log_->warn("checkpoint {} is corrupt ({}): skipped, never loaded ({} of at most {} fallbacks)",
             path, reason, catalog_.fallbacks(), spec_.checkpoint.max_fallbacks);
}

void JobController::NoteDetectionLatency(Detection* d, std::optional<int64_t> injected_at,
                                         int64_t detected_at) {
  if (injected_at) {
    d->detail["fault_injected_at_us"] = *injected_at;
    d->detail["detection_latency_ms"] = static_cast<double>(detected_at - *injected_at) / 1000.0;
    metrics_->ObserveDetection(d->kind, static_cast<double>(detected_at - *injected_at) / 1e6);
  }
  failure_at_us_ = injected_at ? *injected_at : detected_at;
}

// ---- Detections: recorded, decided, planned, carried out.

void JobController::HandleFailure(Detection d) {
  if (d.agent >= 0 && d.host.empty()) d.host = HostOf(d.agent);
  if (!d.time_us) d.time_us = Now();
  // A corrupt checkpoint is the checkpoint machinery's, the rest the playbook's.
  const bool corrupt = d.kind == kind::kCheckpointCorrupt;
  const Decision decision = corrupt ? Decision{} : playbook_.Decide(d);
  // What stops the generation supersedes a held symptom (or is that symptom);
  // what training goes on through (a straggler, a failed save) leaves it be.
  if (corrupt || decision.outcome().name != action::kContinue) {
    if (settler_.holding() && settler_.held()->summary != d.summary) {
      log_->info("dropping the held symptom ({}) in favour of its cause", settler_.held()->summary);
    }
    settler_.Drop();
    hangs_.CancelProbe();
    hang_timer_->Cancel();
  }
  const int64_t event_id = RecordEvent(d);
  last_event_ = event_id;
  PlanInput in{&spec_, &d, &decision, placement_, progress_.restarts, gen_.number + 1};
  RecoveryPlan plan = corrupt ? PlanFallback(in) : PlanRecovery(in);
  if (plan.kind != RecoveryPlan::Kind::kRestart) {
    LogDecision(plan);
    if (plan.decision_carried) playbook_.Carried(decision, d.time_us);
    return Carry(plan, event_id);
  }
  // A restart: the generation is condemned now, its hosts' actions
  // recorded; the teardown's orders wait until its checkpoint is chosen
  // (off the loop) and the restart that names it is recorded.
  Planning p{d, decision, plan, event_id, Record(event_id, plan.actor, plan.actions), {}};
  AdoptPlacement(plan.placement);
  const CheckpointWant want = *plan.want;
  // What a rollback rolls back over includes a save the dying generation
  // still commits (OnCheckpoint).
  pending_rolls_back_ = want.rollback > 0 || want.before_step.has_value();
  planning_ = std::move(p);
  BeginRecovery(d.summary);
  ChooseCheckpoint(want, [this](CheckpointChoice c) { OnRestartChosen(std::move(c)); });
}

void JobController::LogDecision(const RecoveryPlan& plan) {
  if (plan.fallback) return;  // the checkpoints', not the playbook's
  static const char* kKinds[] = {"continue", "restart", "pause", "fail"};
  log_->warn("playbook: {} -> {}", plan.why, kKinds[static_cast<int>(plan.kind)]);
}

void JobController::ChooseCheckpoint(const CheckpointWant& want,
                                     std::function<void(CheckpointChoice)> done) {
  if (catalog_.choosing()) {
    // A bug (two choices at once): pause for a person rather than wait for ever.
    log_->error("bug: a checkpoint choice while another is under way");
    CheckpointChoice c;
    c.pause = true;
    c.why = "vigild began a second checkpoint choice while one was under way (a bug)";
    return done(std::move(c));
  }
  (void)catalog_.Choose(want, CorruptRecorder(), std::move(done));
}

void JobController::OnRestartChosen(CheckpointChoice choice) {
  Planning p = std::move(*planning_);
  planning_.reset();
  if (state() != JobState::kRecovering) {  // a bug: the job moved on while the restart was planned
    log_->error("bug: a restart's checkpoint was chosen with the job {}", JobStateName(state()));
    return;
  }
  const Detection& d = p.detection;
  PlanInput in{&spec_, &d, &p.decision, placement_, progress_.restarts, gen_.number + 1};
  const size_t first = p.plan.actions.size();
  CompleteRestart(in, std::move(choice), catalog_.fallbacks(), &p.plan);
  const std::vector<PlannedAction> rest(p.plan.actions.begin() + static_cast<long>(first),
                                        p.plan.actions.end());
  for (int64_t id : Record(p.event_id, p.plan.actor, rest)) p.ids.push_back(id);
  LogDecision(p.plan);
  if (!p.plan.fallback && p.plan.decision_carried)
    playbook_.Carried(p.decision, d.time_us);  // the restart counts at launch
  if (p.plan.kind == RecoveryPlan::Kind::kPause) {
    pending_rolls_back_ = false;
    return Pause(p.event_id, p.plan.reason);
  }
  pending_cause_ = p.ids.at(static_cast<size_t>(p.plan.cause));
  pending_checkpoint_ = p.plan.checkpoint;
  for (const auto& late : p.late) pending_checkpoint_->rolled_back.push_back(late);
  pending_modifiers_ = p.plan.modifiers;
  if (!p.plan.modifiers.optimizer.empty()) optimizer_override_ = p.plan.modifiers.optimizer;
  pending_restart_ = PendingRestart{d.kind, d.time_us, p.plan.counts_as_restart};
  recovering_from_ = d.kind;
  KillGeneration();
}

void JobController::AdoptPlacement(const Placement& p) {
  const int before = world_size();
  placement_ = p;
  if (world_size() != before) {
    progress_.world_size = world_size();
    metrics_->world_size.Set(static_cast<double>(world_size()));
    metrics_->peak_flops.Set(spec_.world.peak_tflops_per_rank * 1e12 * world_size());
  }
  UpdateHostMetrics();
}

void JobController::Carry(const RecoveryPlan& plan, int64_t event_id) {
  Record(event_id, plan.actor, plan.actions);
  AdoptPlacement(plan.placement);
  switch (plan.kind) {
    case RecoveryPlan::Kind::kFail:
      return Finish(Outcome::kFailed, plan.reason);
    case RecoveryPlan::Kind::kPause:
      return Pause(event_id, plan.reason);
    default:
      return;
  }
}

void JobController::Pause(std::optional<int64_t> event, const std::string& why) {
  paused_event_ = event;
  // A restart under way that pauses (its teardown unconfirmed, its slot no
  // spare fills) keeps its checkpoint and modifiers for the resume; the
  // launch is then the person's, not a restart of the playbook's.
  pending_cause_.reset();
  pending_restart_.reset();
  progress_.message =
      "paused: " + why + ". Continue with `vigil resume --workdir " + paths_.workdir + "`";
  metrics_->pages_total.Increment();
  metrics_->waiting_for_human.Set(1);
  journal_->SetRunStatus(run_id_, job_state::kPaused);
  log_->error("PAGE: {}", progress_.message);
  const bool torn_down = state() == JobState::kRecovering;
  Transition(JobState::kPaused, why);
  if (!torn_down) FinishGeneration("paused: " + why);
  if (!gen_.alive.empty()) {
    // The ranks are stopped; agents stay, ready for a resume.
    wire::Envelope env;
    env.mutable_kill_generation()->set_generation(static_cast<uint64_t>(gen_.number));
    env.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
    SendToGeneration(env);
  }
}

Status JobController::Resume(const std::string& actor, const std::string& note) {
  if (state() != JobState::kPaused)
    return Status::FailedPrecondition(std::string("the job is ") + JobStateName(state()) +
                                      ", not paused");
  if (!gen_.alive.empty())
    return Status::Unavailable("the paused generation is still being torn down; try again");
  if (catalog_.choosing())
    return Status::Unavailable("the launch is choosing its checkpoint; try again");
  if (auto slot = placement_.VacantSlot(); slot && placement_.FreeSpares().empty()) {
    return Status::FailedPrecondition(
        placement_.VacancyReason(*slot) +
        ": start a vigil-agent for this job on a healthy host (it registers as a spare), "
        "then resume");
  }
  const int64_t id = AddIntervention(paused_event_, action::kResume, "human:" + actor,
                                     json{{"note", note}}, "resumed by " + actor);
  Placement p = placement_;
  Record(paused_event_, "human:" + actor, FillVacancies(&p, spec_.world.ranks_per_host));
  AdoptPlacement(p);
  metrics_->waiting_for_human.Set(0);
  journal_->SetRunStatus(run_id_, job_state::kRunning);
  catalog_.ResetFallbacks();  // a person looked: skip corrupt checkpoints afresh
  progress_.message.clear();
  log_->warn("resumed by {}{}", actor, note.empty() ? "" : ": " + note);
  Launch(id ? std::optional<int64_t>(id) : std::nullopt);
  return Status::Ok();
}

Status JobController::InjectChaos(const std::string& spec, const std::string& actor) {
  if (state() != JobState::kRunning && state() != JobState::kRendezvous) {
    auto f = ParseChaosFault(spec);
    if (!f.ok()) return f.status();
    return Status::FailedPrecondition(std::string("the job is ") + JobStateName(state()));
  }
  VIGIL_RETURN_IF_ERROR(chaos_.Add(spec, world_size()));
  log_->warn("chaos from {}: {}", actor, spec);
  return Status::Ok();
}

int64_t JobController::RecordEvent(const std::string& kind, const json& detail,
                                   const std::string& host) {
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = gen_.row ? std::optional<int64_t>(gen_.row) : std::nullopt;
  ev.time_us = Now();
  ev.kind = kind;
  ev.host = host;
  ev.step = progress_.step;
  ev.detail_json = detail.dump();
  return journal_->AddEvent(ev);
}

void JobController::Stop(const std::string& why) {
  if (terminal()) return;
  RecordEvent(kind::kCoordinatorStopped, json{{"reason", why}});
  Finish(Outcome::kCancelled, why);
}

void JobController::Finish(Outcome outcome, const std::string& why) {
  // A checkpoint choice under way is of no use any more: nothing it finds is recorded.
  catalog_.CancelChoice();
  planning_.reset();
  FinishGeneration(why);
  metrics_->waiting_for_human.Set(0);
  const bool succeeded = outcome == Outcome::kSucceeded;
  Transition(succeeded                        ? JobState::kSucceeded
             : outcome == Outcome::kCancelled ? JobState::kCancelled
                                              : JobState::kFailed,
             why);
  progress_.message = why;
  const double wall = static_cast<double>(Now() - progress_.started_at_us) / 1e6;
  std::optional<double> tps;
  if (succeeded && wall > 0) tps = static_cast<double>(final_tokens_) / wall;
  journal_->FinishRun(run_id_, JobStateName(state()), Now(),
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

// ---- Metrics that are state, not counts.

void JobController::UpdateHostMetrics() {
  std::map<std::string, int> n;
  counted_states_.assign(static_cast<size_t>(agents_->agent_count()), "");
  for (int a = 0; a < agents_->agent_count(); ++a) {
    // A host that came back is a new agent: its newest one is the host's state.
    const std::string state = placement_.HostState(a);
    metrics_->SetHostState(agents_->agent_host(a), state);
    ++n[state];
    counted_states_[static_cast<size_t>(a)] = state;
  }
  metrics_->SetHosts(n);
  host_counts_ = std::move(n);
}

void JobController::UpdateHostMetricsForNew(int agent) {
  // Recounted: this agent (counted before, as lost, if a count ran while
  // it checked its storage), and every agent after it (registered since
  // the last count: any that went away before their storage check, too).
  const size_t from = std::min(counted_states_.size(), static_cast<size_t>(agent));
  counted_states_.resize(std::max(counted_states_.size(), static_cast<size_t>(agent) + 1));
  for (size_t a = from; a < counted_states_.size(); ++a) {
    std::string& counted = counted_states_[a];
    if (!counted.empty()) --host_counts_[counted];
    counted = placement_.HostState(static_cast<int>(a));
    metrics_->SetHostState(agents_->agent_host(static_cast<int>(a)), counted);
    ++host_counts_[counted];
  }
  metrics_->SetHosts(host_counts_);
}

void JobController::UpdateRankMetrics(int64_t now_us) {
  std::map<std::string, int> n;
  for (int rank = 0; rank < world_size(); ++rank) {
    if (!gen_.alive.count(rank)) {
      ++n["down"];
    } else if (!hangs_.known(rank) || !gen_.first_step_seen) {
      ++n["starting"];
    } else {
      ++n[hangs_.saving(rank) ? "saving" : "training"];
    }
  }
  metrics_->SetRanks(n);
  metrics_->productive_seconds.Set(goodput_.ProductiveSeconds(now_us));
  metrics_->goodput.Set(goodput_.Goodput(now_us));
}

void JobController::OnTick() {
  const int64_t now = Now();
  if (now - metrics_updated_us_ >= 1000000) {
    metrics_updated_us_ = now;
    UpdateRankMetrics(now);
  }
  if (state() != JobState::kRunning || hangs_.probing() || settler_.holding()) return;
  if (hangs_.Silent(gen_.alive, now)) DeclareHang(now);
}

void JobController::OnAgentsBack() {
  if (gen_.first_step_seen) hangs_.StartWatching(gen_.alive, Now());
}

}  // namespace vigil::coordinator
