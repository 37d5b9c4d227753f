// JobController, continued: what the agents report (rank reports and exits,
// teardown confirmations, diagnoses, GPU faults, lost agents), turned into
// detections, and the generation's lifecycle (launch, start and teardown
// timers, every agent confirmed).
#include <algorithm>
#include <cmath>

#include "common/vocabulary.h"
#include "coordinator/detections.h"
#include "coordinator/job_controller.h"

namespace vigil::coordinator {

using nlohmann::json;

void JobController::OnAllAgentsRegistered() {
  if (state() != JobState::kPending || catalog_.choosing()) return;
  placement_.Fill();
  UpdateHostMetrics();
  Launch(std::nullopt);
}

void JobController::OnAgentJoined(int agent) {
  const std::string host = agents_->agent_host(agent);
  if (placement_.Cordoned(host)) {
    log_->warn("host {} registered again; it is cordoned and gets no ranks", host);
  } else {
    log_->info("host {} waits as a spare", host);
  }
  UpdateHostMetricsForNew(agent);
}

// ---- The generation's lifecycle.

void JobController::SendToGeneration(const wire::Envelope& env) {
  for (int a : gen_.agents) agents_->SendToAgent(a, env);
}

void JobController::Launch(std::optional<int64_t> cause_intervention) {
  // The restart's checkpoint was chosen when it was planned; a first start,
  // a resume and a regrow choose now (off the loop).
  if (pending_checkpoint_) return LaunchFrom(*pending_checkpoint_, cause_intervention);
  const JobState from = state();
  ChooseCheckpoint(CheckpointWant{}, [this, from, cause_intervention](CheckpointChoice choice) {
    if (state() != from) {  // a bug: the job moved on while its launch chose
      log_->error("bug: a launch's checkpoint was chosen with the job {}, not {}",
                  JobStateName(state()), JobStateName(from));
      return;
    }
    if (!choice.pause) return LaunchFrom(choice, cause_intervention);
    AddIntervention(last_event_, action::kPauseAndPage, "auto:checkpoints",
                    json{{"fallbacks", catalog_.fallbacks()}}, choice.why);
    Pause(last_event_, choice.why);
  });
}

void JobController::LaunchFrom(CheckpointChoice choice, std::optional<int64_t> cause_intervention) {
  // A host lost while the last generation was torn down (or the
  // checkpoint was chosen) leaves its slot vacant.
  if (placement_.VacantSlot()) {
    Placement p = placement_;
    Record(last_event_, "auto:placement", FillVacancies(&p, spec_.world.ranks_per_host));
    AdoptPlacement(p);
    if (auto slot = placement_.VacantSlot()) {
      const std::string vacancy = placement_.VacancyReason(*slot);
      AddIntervention(last_event_, action::kPauseAndPage, "auto:placement", json{{"slot", *slot}},
                      vacancy);
      return Pause(last_event_, vacancy);
    }
  }
  const LaunchModifiers mods = pending_modifiers_;
  pending_checkpoint_.reset();
  pending_modifiers_ = LaunchModifiers{};
  pending_rolls_back_ = false;
  if (pending_restart_) {
    // The restart happened: it counts now (toward limits.max_restarts and the restart loop).
    metrics_->Restarts(pending_restart_->kind).Increment();
    if (pending_restart_->counts) {
      ++progress_.restarts;
      playbook_.Restarted(pending_restart_->detected_at_us);
    }
    pending_restart_.reset();
  }
  catalog_.RollBack(choice.rolled_back, gen_.number + 1);
  const auto& ckpt = choice.checkpoint;
  if (gen_.number >= 0) store_->ErasePrefix("gen-" + std::to_string(gen_.number) + "/");
  Generation next;
  next.number = gen_.number + 1;
  next.agents = placement_.slots();
  next.resumed_from = ckpt ? ckpt->path : "";
  next.resumed_from_step = ckpt ? ckpt->step : 0;
  gen_ = std::move(next);
  hangs_.NewGeneration();
  hang_timer_->Cancel();
  numerics_.Reset();
  stragglers_.Reset();
  chaos_.NewGeneration();  // faults sent to the last generation died with it

  GenerationRow g;
  g.run_id = run_id_;
  g.number = gen_.number;
  g.world_size = world_size();
  for (size_t i = 0; i < gen_.agents.size(); ++i)
    g.hosts += (i ? "," : "") + agents_->agent_host(gen_.agents[i]);
  if (ckpt) g.resumed_from_step = ckpt->step;
  g.resumed_from_path = gen_.resumed_from;
  g.cause_intervention_id = cause_intervention;
  g.started_at_us = Now();
  gen_.row = journal_->StartGeneration(g);
  goodput_.GenerationStarted(gen_.resumed_from);

  LaunchSettings s;
  s.world_size = world_size();
  s.ranks_per_host = spec_.world.ranks_per_host;
  s.batch_per_rank = placement_.batch_per_rank();
  s.optimizer = optimizer_override_;
  s.lr_scale = mods.scale_lr > 0 ? mods.scale_lr * choice.lr_scale : 0.0;
  const int64_t resume_step = ckpt ? ckpt->step : 0;
  s.skip_batches = mods.skip_batches;
  s.skip_at_step = resume_step;
  if (mods.skip_batches > 0 && mods.skip_end_step)
    s.skip_at_step = std::max(resume_step, *mods.skip_end_step - mods.skip_batches);
  s.chaos = chaos_.armed();
  for (int slot = 0; slot < static_cast<int>(gen_.agents.size()); ++slot) {
    for (int r = slot * s.ranks_per_host; r < (slot + 1) * s.ranks_per_host; ++r)
      gen_.alive.insert(r);
    agents_->SendToAgent(gen_.agents[static_cast<size_t>(slot)],
                         LaunchOrder(gen_, slot, paths_, s));
  }
  progress_.generation = gen_.number;
  progress_.live_ranks = static_cast<int>(gen_.alive.size());
  metrics_->generation.Set(static_cast<double>(gen_.number));
  metrics_->live_ranks.Set(progress_.live_ranks);
  Transition(JobState::kRendezvous,
             "generation " + std::to_string(gen_.number) + " launched " +
                 (ckpt ? "from " + gen_.resumed_from : std::string("from scratch")));
  ArmStartTimer();
}

void JobController::ArmStartTimer() {
  const int64_t number = gen_.number;
  start_timer_->Start(std::chrono::milliseconds(spec_.limits.start_timeout_ms), [this, number] {
    if (gen_.number != number || gen_.first_step_seen || state() != JobState::kRendezvous) return;
    HandleFailure(StartTimeoutDetection(number, spec_.limits.start_timeout_ms, Now()));
  });
}

void JobController::BeginRecovery(const std::string& reason) {
  Transition(JobState::kRecovering, reason);
  FinishGeneration(reason);
}

void JobController::TearDownGeneration(const std::string& reason) {
  BeginRecovery(reason);
  KillGeneration();
}

void JobController::KillGeneration() {
  wire::Envelope env;
  env.mutable_kill_generation()->set_generation(static_cast<uint64_t>(gen_.number));
  env.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
  SendToGeneration(env);
  const int64_t number = gen_.number;
  teardown_timer_->Start(std::chrono::milliseconds(spec_.limits.TeardownTimeoutMs()),
                         [this, number] { OnTeardownTimeout(number); });
  // Every host of it was lost while the restart was planned: nobody to wait for.
  MaybeLaunchNext();
}

void JobController::OnTeardownTimeout(int64_t number) {
  if (state() != JobState::kRecovering || gen_.number != number) return;
  if (gen_.AllStopped([this](int a) { return agents_->agent_connected(a); })) return;
  // Agents confirm with GenerationStopped. One that never does may still
  // have ranks holding the GPUs: rather than launch beside them, the job
  // pauses for a person to look at that host.
  std::string silent;
  int agent = -1;
  for (int a : gen_.agents) {
    if (agents_->agent_connected(a) && !gen_.agents_stopped.count(a)) {
      silent += (silent.empty() ? "" : ", ") + agents_->agent_host(a);
      if (agent < 0) agent = a;
    }
  }
  Detection d;
  d.kind = kind::kHostLost;
  d.agent = agent;
  d.host = HostOf(agent);
  d.time_us = Now();
  d.detail = json{{"reason", "teardown not confirmed"}, {"hosts", silent}};
  d.summary = "host(s) " + silent + " did not confirm the teardown of generation " +
              std::to_string(number) + " within " +
              std::to_string(spec_.limits.TeardownTimeoutMs()) + " ms";
  const auto event_id = RecordEvent(d);
  last_event_ = event_id;
  AddIntervention(event_id, action::kPauseAndPage, "auto:teardown", json{{"hosts", silent}},
                  d.summary);
  Pause(event_id, d.summary);
}

void JobController::OnGenerationStopped(int agent, uint64_t generation) {
  if (static_cast<int64_t>(generation) != gen_.number || state() != JobState::kRecovering) return;
  crash_points_.Reach(crash_point::kTeardownConfirmed, gen_.number);
  gen_.agents_stopped.insert(agent);
  MaybeLaunchNext();
}

void JobController::MaybeLaunchNext() {
  // A restart still choosing its checkpoint has not ordered the teardown
  // yet; a launch choosing its own is under way already.
  if (state() != JobState::kRecovering || planning_ || catalog_.choosing()) return;
  if (!gen_.AllStopped([this](int a) { return agents_->agent_connected(a); })) return;
  teardown_timer_->Cancel();  // confirmed: what is left is the launch's
  auto cause = pending_cause_;
  pending_cause_.reset();
  Launch(cause);
}

void JobController::FinishGeneration(const std::string& reason) {
  const int64_t now = Now();
  goodput_.GenerationEnded(now);
  if (gen_.row) journal_->EndGeneration(gen_.row, now, reason);
}

// ---- Rank reports.

void JobController::OnRankReport(int /*agent*/, const wire::RankReport& r) {
  if (static_cast<int64_t>(r.generation()) != gen_.number || terminal()) return;
  const int rank = static_cast<int>(r.rank());
  switch (r.kind()) {
    case wire::RankReport::STEP:
      return OnStep(r);
    case wire::RankReport::SAVING:
      crash_points_.Reach(crash_point::kSaving, gen_.number);
      hangs_.OnSaving(rank, Now());
      break;
    case wire::RankReport::NONFINITE:
      // Its exit (code 5) follows; that is the detection.
      gen_.nonfinite[rank] = r;
      break;
    case wire::RankReport::CHECKPOINT:
      crash_points_.Reach(crash_point::kCheckpointReported, gen_.number);
      return OnCheckpoint(r);
    case wire::RankReport::CHECKPOINT_FAILED:
      return OnCheckpointFailed(r);
    case wire::RankReport::STARTED:
      crash_points_.Reach(crash_point::kRankStarted, gen_.number);
      // Restart-time changes the rank applied (optimizer switch, LR scale).
      if (rank == 0 && !r.message().empty())
        log_->warn("generation {} resumes with changes: {}", gen_.number, r.message());
      if (static_cast<int64_t>(r.resumed_from_step()) != gen_.resumed_from_step) {
        log_->error("rank {} of generation {} resumed at step {}, not at step {} as ordered", rank,
                    gen_.number, r.resumed_from_step(), gen_.resumed_from_step);
      }
      break;
    case wire::RankReport::FINISHED:
      if (rank == 0) {
        progress_.params_digest = r.params_digest();
        final_loss_ = r.loss();
        final_tokens_ = static_cast<int64_t>(r.tokens_seen());
      }
      break;
    case wire::RankReport::ERROR:
      // A refused checkpoint is marked when the rank's exit (code 4) arrives.
      gen_.rank_errors[rank] = r.message();
      break;
    default:
      break;
  }
}

void JobController::OnStep(const wire::RankReport& r) {
  // Steps that were in flight when the generation was condemned detect nothing more.
  if (state() == JobState::kRecovering || state() == JobState::kPaused) return;
  const int rank = static_cast<int>(r.rank());
  if (!gen_.first_step_seen) {
    gen_.first_step_seen = true;
    journal_->MarkGenerationFirstStep(gen_.row, r.at_us());
    goodput_.FirstStep(r.at_us());
    if (failure_at_us_ && !recovering_from_.empty()) {
      metrics_->ObserveRecovery(recovering_from_,
                                static_cast<double>(r.at_us() - *failure_at_us_) / 1e6);
    }
    failure_at_us_.reset();
    recovering_from_.clear();
    catalog_.ResetFallbacks();  // this generation restored: a later recovery counts afresh
    hangs_.StartWatching(gen_.alive, Now());
    Transition(JobState::kRunning, "generation " + std::to_string(gen_.number) + " reached step " +
                                       std::to_string(r.step()));
  }
  if (rank == 0) steps_.OnRank0Step(r, gen_.row);
  metrics_->moe_dropped_choices.Increment(static_cast<double>(r.dropped_choices()));
  hangs_.OnStep(rank, static_cast<int64_t>(r.step()), Now());
  if (rank == 0) {
    hangs_.OnStepTime(r.step_seconds());
    if (auto d = numerics_.Observe(r, Now())) {
      NoteDetectionLatency(&*d, chaos_.TakeInjectedAt(std::nullopt), Now());
      HandleFailure(std::move(*d));
      if (state() != JobState::kRunning) return;  // the playbook acted on it
    }
  }
  if (auto d = stragglers_.Observe(rank, static_cast<int64_t>(r.step()), r.compute_seconds(),
                                   gen_.alive, Now())) {
    d->agent = AgentOfRank(*d->rank);
    NoteDetectionLatency(&*d, chaos_.TakeInjectedAt(d->rank), Now());
    HandleFailure(std::move(*d));
  }
  if (state() != JobState::kRunning) return;
  chaos_.OnStep(
      r, gen_.number, [this](int rank) { return AgentOfRank(rank); }, catalog_.NewestUsable());
}

void JobController::OnCheckpoint(const wire::RankReport& r) {
  for (const auto& row : catalog_.rows()) {
    // Sent again (no vigild acked it): recorded already.
    if (row.path == r.checkpoint_path() && row.committed_at_us == r.at_us()) return;
  }
  CheckpointRow c;
  c.run_id = run_id_;
  c.generation_id = gen_.row;
  c.step = static_cast<int64_t>(r.step());
  c.path = r.checkpoint_path();
  c.bytes = static_cast<int64_t>(r.checkpoint_bytes());
  c.committed_at_us = r.at_us();
  c = catalog_.Add(c);
  // The dying generation's last save, after the restart was planned: a
  // restart that rolls back rolls back over it too.
  if (pending_rolls_back_ && pending_checkpoint_) pending_checkpoint_->rolled_back.push_back(c);
  if (pending_rolls_back_ && planning_) planning_->late.push_back(c);
  metrics_->checkpoints_total.Increment();
  metrics_->last_checkpoint_step.Set(static_cast<double>(c.step));
  metrics_->last_checkpoint_timestamp.Set(static_cast<double>(c.committed_at_us) / 1e6);
  metrics_->checkpoint_size_bytes.Set(static_cast<double>(c.bytes));
  metrics_->checkpoint_written_bytes.Increment(static_cast<double>(c.bytes));
  if (r.save_seconds() > 0) metrics_->checkpoint_save_seconds.Observe(r.save_seconds());
  goodput_.CheckpointCommitted(c.path, c.committed_at_us);
  ApplyRetention();
  MaybeRegrow(c.step);
}

void JobController::ApplyRetention() {
  // Never the checkpoint resumed from, nor what a restart under way resumes
  // from or moves aside.
  std::set<std::string> protect{gen_.resumed_from};
  if (pending_checkpoint_) {
    if (pending_checkpoint_->checkpoint) protect.insert(pending_checkpoint_->checkpoint->path);
    for (const auto& row : pending_checkpoint_->rolled_back) protect.insert(row.path);
  }
  if (planning_) {
    for (const auto& row : planning_->late) protect.insert(row.path);
  }
  for (const auto& row : catalog_.RetentionVictims(protect)) {
    AddIntervention(std::nullopt, action::kDeleteCheckpoint, "auto:retention",
                    json{{"checkpoint", row.path},
                         {"checkpoint_step", row.step},
                         {"bytes", row.bytes},
                         {"keep_last", spec_.checkpoint.keep_last},
                         {"keep_every", spec_.checkpoint.keep_every}},
                    "ordered");
    catalog_.Delete(row);
  }
}

void JobController::MaybeRegrow(int64_t step) {
  if (!spec_.world.regrow || state() != JobState::kRunning || step >= spec_.schedule.steps) return;
  const auto grow = placement_.PlanRegrow();
  if (!grow) return;
  pending_cause_ = AddIntervention(std::nullopt, action::kGrowWorld, "auto:placement",
                                   json{{"from_world", grow->from_world},
                                        {"to_world", grow->to_world},
                                        {"batch_per_rank", grow->batch_per_rank},
                                        {"global_batch", grow->global_batch},
                                        {"hosts_added", grow->hosts_added},
                                        {"checkpoint_step", step}},
                                   "ordered");
  log_->warn("growing the world back from {} to {} ranks ({} sequences per rank) from step {}",
             grow->from_world, grow->to_world, grow->batch_per_rank, step);
  Placement p = placement_;
  p.Apply(*grow);
  AdoptPlacement(p);
  TearDownGeneration("growing the world from " + std::to_string(grow->from_world) + " to " +
                     std::to_string(grow->to_world) + " ranks");
}

void JobController::OnCheckpointFailed(const wire::RankReport& r) {
  // Every rank whose shard failed says why (a full disk fails them all): one event per save.
  if (!failed_saves_.insert({gen_.number, static_cast<int64_t>(r.step())}).second) return;
  Detection d = SaveFailedDetection(r, Now());
  d.agent = AgentOfRank(*d.rank);
  d.host = HostOf(d.agent);
  // A fault chaos sent (disk-full) waits for the next save: no detection latency to speak of.
  if (auto sent = chaos_.TakeInjectedAt(d.rank)) d.detail["fault_injected_at_us"] = *sent;
  if (state() == JobState::kRunning) return HandleFailure(std::move(d));
  // The generation that failed to save is being replaced or stopped already.
  AddIntervention(
      RecordEvent(d), action::kNone, "auto:state", json::object(),
      std::string("the job is ") + (state() == JobState::kPaused ? "paused" : "recovering"));
}

// ---- Hangs.

void JobController::DeclareHang(int64_t now_us) {
  hangs_.BeginProbe(now_us);
  log_->warn("generation {} made no progress for {:.0f} ms: asking the agents what its ranks do",
             gen_.number, hangs_.timeout_ms());
  wire::Envelope env;
  env.mutable_diagnose_ranks()->set_generation(static_cast<uint64_t>(gen_.number));
  env.mutable_diagnose_ranks()->set_reason("no progress");
  SendToGeneration(env);
  // An agent that does not answer is a detection of its own (host lost);
  // the hang is declared with what the others said.
  const int64_t number = gen_.number;
  hang_timer_->Start(std::chrono::milliseconds(spec_.detection.hang_probe_ms), [this, number] {
    if (hangs_.probing() && gen_.number == number) FinishHang();
  });
}

void JobController::OnDiagnosis(int agent, const wire::Diagnosis& d) {
  if (!hangs_.probing() || static_cast<int64_t>(d.generation()) != gen_.number) return;
  hangs_.AddDiagnosis(agent, d);
  for (int a : gen_.agents) {
    if (agents_->agent_connected(a) && !hangs_.answered(a)) return;
  }
  FinishHang();
}

void JobController::FinishHang() {
  hang_timer_->Cancel();
  Detection d = hangs_.FinishProbe(gen_.alive, gen_.number);
  if (d.rank) d.agent = AgentOfRank(*d.rank);
  NoteDetectionLatency(&d, chaos_.TakeInjectedAt(d.rank), d.time_us);
  HandleFailure(std::move(d));
}

// ---- Exits, lost hosts, GPU faults.

void JobController::OnRankExited(int agent, const wire::RankExited& e) {
  if (static_cast<int64_t>(e.generation()) != gen_.number) return;
  const int rank = static_cast<int>(e.rank());
  // Its exit is known (sent again: no vigild acked it), or its host was lost.
  if (!gen_.alive.count(rank)) return;
  gen_.alive.erase(rank);
  progress_.live_ranks = static_cast<int>(gen_.alive.size());
  metrics_->live_ranks.Set(progress_.live_ranks);
  if (state() == JobState::kRecovering || state() == JobState::kPaused || terminal()) {
    // A consequence of the teardown (or of the failure being handled): not a new detection.
    log_->info("rank {} of generation {} gone during teardown (code {}, signal {})", rank,
               gen_.number, e.exit_code(), e.signal());
    return;
  }
  if (e.signal() == 0 && e.exit_code() == 0) {
    gen_.succeeded.insert(rank);
    if (static_cast<int>(gen_.succeeded.size()) == world_size()) {
      Finish(Outcome::kSucceeded,
             "all " + std::to_string(gen_.succeeded.size()) + " ranks finished");
    }
    return;
  }
  Detection d = RankExitDetection(e, gen_.number, Now());
  d.agent = agent;
  d.host = HostOf(agent);
  auto& errors = gen_.rank_errors;
  if (errors.count(rank)) d.detail["message"] = errors[rank];
  if (d.kind == kind::kCheckpointCorrupt && !gen_.resumed_from.empty()) {
    // The ranks verify every byte they load; all of them refuse together.
    catalog_.MarkCorrupt(gen_.resumed_from);
    // Every rank refuses; the ones whose own part failed say which shard and tensor.
    json by_rank = json::object();
    std::string reason = errors.count(rank) ? errors[rank] : "", found_by;
    for (const auto& [r, message] : errors) {
      by_rank[std::to_string(r)] = message;
      // A rank that only heard of another's failure says "rank N could not verify its part".
      if (found_by.empty() && message.find("could not verify its part") == std::string::npos) {
        reason = message;
        found_by = "rank " + std::to_string(r);
      }
    }
    d.detail.update(CorruptDetail(gen_.resumed_from, reason,
                                  found_by.empty() ? "rank " + std::to_string(rank) : found_by));
    d.detail["rank_errors"] = by_rank;
  }
  if (e.signal_sent_at_us() > 0) {
    chaos_.TakeInjectedAt(rank);
    NoteDetectionLatency(&d, e.signal_sent_at_us(), Now());
  } else {
    failure_at_us_ = e.exited_at_us();
  }
  d.summary = "rank " + std::to_string(rank) + " on " + d.host +
              (e.signal() ? " killed by signal " + std::to_string(e.signal())
                          : " exited with code " + std::to_string(e.exit_code()));
  if (d.kind == kind::kNonfinite && gen_.nonfinite.count(rank)) {
    // The ranks refused the update; the checkpoints from its step on are suspect.
    const auto& r = gen_.nonfinite[rank];
    d.step = static_cast<int64_t>(r.step());
    d.detail["loss"] = r.loss();
    d.detail["grad_norm"] = std::isfinite(r.grad_norm()) ? json(r.grad_norm()) : json("non-finite");
    d.detail["step"] = r.step();
    d.summary = "rank " + std::to_string(rank) + ": " + r.message();
    // The NaN travelled through the all-reduce: which rank it came from is unknowable here.
    NoteDetectionLatency(&d, chaos_.TakeInjectedAt(std::nullopt), Now());
  }
  if (d.kind != kind::kCollectiveError) return HandleFailure(std::move(d));
  // Perhaps the symptom of a death not yet reported: held to settle.
  settler_.Hold(std::move(d));
}

void JobController::OnAgentLost(int agent, const std::string& why) {
  if (terminal() || state() == JobState::kPending) return;
  UpdateHostMetrics();
  Detection d = HostLostDetection(agents_->agent_host(agent), why, Now());
  d.agent = agent;
  NoteDetectionLatency(&d, chaos_.TakeAgentInjectedAt(agent), Now());
  if (gen_.Has(agent)) {
    // Its ranks died with it (PR_SET_PDEATHSIG), or are out of reach.
    const int rph = spec_.world.ranks_per_host;
    for (size_t i = 0; i < gen_.agents.size(); ++i) {
      if (gen_.agents[i] != agent) continue;
      for (int r = static_cast<int>(i) * rph; r < static_cast<int>(i + 1) * rph; ++r)
        gen_.alive.erase(r);
    }
  }
  const bool placed = placement_.Placed(agent);
  if (!placed || state() == JobState::kPaused) {
    // A spare, or a host of a job that waits for a person anyway: recorded;
    // the vacancy is filled when the job resumes.
    d.detail["spare"] = !placed;
    const auto event_id = RecordEvent(d);
    const size_t free = placement_.FreeSpares().size();
    AddIntervention(event_id, placed ? action::kNone : action::kContinueTraining, "auto:placement",
                    json{{"spares_free", free}},
                    placed ? "the job is paused; the slot is filled on resume"
                           : "a spare was lost; " + std::to_string(free) + " spare(s) free");
    // A teardown waiting for this host's confirmation waits no more.
    if (state() == JobState::kRecovering) OnGenerationStopped(agent, gen_.number);
    return;
  }
  if (state() == JobState::kRecovering) {
    // Lost while its generation was torn down: the restart already ordered
    // goes on, and the launch fills the vacant slot (or pauses).
    const auto event_id = RecordEvent(d);
    AddIntervention(event_id, action::kNone, "auto:placement", json::object(),
                    "a restart is in progress; the launch replaces the host");
    OnGenerationStopped(agent, static_cast<uint64_t>(gen_.number));
    return;
  }
  HandleFailure(std::move(d));
}

void JobController::OnGpuFault(int agent, const wire::GpuFault& g) {
  if (terminal() || state() == JobState::kPending) return;
  Detection d = GpuFaultDetection(g, agents_->agent_host(agent), Now());
  d.agent = agent;
  NoteDetectionLatency(&d, d.rank ? chaos_.TakeInjectedAt(d.rank) : std::nullopt, Now());
  if (state() == JobState::kRunning || state() == JobState::kRendezvous)
    return HandleFailure(std::move(d));
  // A restart is already under way (the fault's first symptom was likely a
  // rank's crash), or the job waits for a person: the playbook's host
  // actions (cordon, spare) still apply, to the next launch.
  const auto event_id = RecordEvent(d);
  const Decision decision = playbook_.Decide(d);
  PlanInput in{&spec_, &d, &decision, placement_, progress_.restarts, gen_.number + 1};
  const RecoveryPlan plan =
      PlanHostActions(in, state() == JobState::kPaused
                              ? "the job is paused"
                              : "a restart is in progress; the host actions apply to its launch");
  Record(event_id, plan.actor, plan.actions);
  AdoptPlacement(plan.placement);
  playbook_.Carried(decision, d.time_us);  // its host actions were
}

}  // namespace vigil::coordinator
