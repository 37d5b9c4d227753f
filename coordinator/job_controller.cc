#include "coordinator/job_controller.h"

#include <signal.h>
#include <string.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "checkpoint/checkpoint.h"
#include "checkpoint/retention.h"
#include "common/util.h"

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
                             Logbook* logbook, int64_t run_id, AgentLink* agents,
                             RendezvousStore* store, CoordinatorMetrics* metrics,
                             std::vector<ChaosFault> chaos)
    : spec_(spec),
      paths_(std::move(paths)),
      logbook_(logbook),
      run_id_(run_id),
      agents_(agents),
      store_(store),
      metrics_(metrics),
      chaos_(std::move(chaos)),
      log_(MakeLogger("job")),
      teardown_timer_(io),
      settle_timer_(io),
      start_timer_(io) {
  progress_.run_id = run_id;
  progress_.total_steps = spec.schedule.steps;
  progress_.started_at_us = NowMicros();
  metrics_->total_steps.Set(spec.schedule.steps);
  metrics_->world_size.Set(spec.world.world_size());
  metrics_->SetState(JobStateName(state_));
}

void JobController::Check(const Status& st, const char* what) {
  // The logbook is the job's memory: failing to write it is loud, but the
  // job goes on (the decision is already made and also in vigild's log).
  if (!st.ok()) log_->error("logbook write failed ({}): {}", what, st.ToString());
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
  Launch(std::nullopt);
}

JobController::Choice JobController::ChooseCheckpoint() {
  Choice c;
  auto rows = logbook_->Checkpoints(run_id_);
  if (!rows.ok()) {
    c.pause = true;
    c.why = "cannot read checkpoints from the logbook: " + rows.status().ToString();
    return c;
  }
  bool any = false;
  for (const auto& row : rows.value()) {
    if (row.state == "deleted") continue;
    any = true;
    if (row.state != "committed" || bad_checkpoints_.count(row.path)) continue;
    if (fallbacks_ > spec_.checkpoint.max_fallbacks) break;
    // A cheap check before a whole world is launched at it: the manifest and
    // every shard's size. The ranks verify every byte they load.
    auto reader = checkpoint::CheckpointReader::Open(checkpoint::Storage::Default(), row.path);
    if (!reader.ok()) {
      RecordCorrupt(row.path, reader.status().message());
      continue;
    }
    if (fallbacks_ > spec_.checkpoint.max_fallbacks) break;
    c.checkpoint = row;
    return c;
  }
  if (!any) return c;  // nothing was ever committed: a fresh start
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

void JobController::MarkCorrupt(const std::string& path) {
  if (!bad_checkpoints_.insert(path).second) return;
  ++fallbacks_;
  auto rows = logbook_->Checkpoints(run_id_);
  if (!rows.ok()) return Check(rows.status(), "checkpoints");
  for (const auto& row : rows.value()) {
    if (row.path == path)
      Check(logbook_->SetCheckpointState(row.id, "corrupt", NowMicros()), "checkpoint state");
  }
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
  Check(logbook_->AddEvent(ev).status(), "event");
  metrics_->Failures("checkpoint_corrupt").Increment();
  log_->warn("checkpoint {} is corrupt ({}): skipped, never loaded ({} of at most {} fallbacks)",
             path, reason, fallbacks_, spec_.checkpoint.max_fallbacks);
}

void JobController::Pause(std::optional<int64_t> cause, const std::string& why) {
  InterventionRow i;
  i.run_id = run_id_;
  i.time_us = NowMicros();
  i.action = "pause_and_page";
  i.actor = "auto:default";
  i.params_json = json{{"after_intervention", cause ? json(*cause) : json(nullptr)}}.dump();
  i.outcome = why;
  Check(logbook_->AddIntervention(i).status(), "intervention");
  Finish(Outcome::kPaused, "paused: " + why);
}

void JobController::ApplyRetention() {
  auto rows = logbook_->Checkpoints(run_id_);
  if (!rows.ok()) return Check(rows.status(), "checkpoints");
  std::vector<int64_t> steps;
  std::set<int64_t> protect;
  std::map<int64_t, CheckpointRow> by_step;
  for (const auto& row : rows.value()) {
    if (row.state != "committed" || bad_checkpoints_.count(row.path)) continue;
    steps.push_back(row.step);
    by_step.emplace(row.step, row);  // newest row of a step first
    if (row.path == resumed_from_) protect.insert(row.step);
  }
  for (int64_t step : checkpoint::RetentionVictims(steps, spec_.checkpoint.keep_last,
                                                   spec_.checkpoint.keep_every, protect)) {
    const CheckpointRow& row = by_step.at(step);
    Status st = checkpoint::Storage::Default()->RemoveAll(row.path);
    if (st.ok()) Check(logbook_->SetCheckpointState(row.id, "deleted", NowMicros()), "checkpoint");
    InterventionRow i;
    i.run_id = run_id_;
    i.time_us = NowMicros();
    i.action = "delete_checkpoint";
    i.actor = "auto:retention";
    i.params_json = json{{"checkpoint", row.path},
                         {"checkpoint_step", row.step},
                         {"bytes", row.bytes},
                         {"keep_last", spec_.checkpoint.keep_last},
                         {"keep_every", spec_.checkpoint.keep_every}}
                        .dump();
    i.outcome = st.ok() ? "deleted" : "failed: " + st.message();
    Check(logbook_->AddIntervention(i).status(), "retention intervention");
    log_->info("retention: {} {} (step {})", st.ok() ? "deleted" : "could not delete", row.path,
               row.step);
  }
}

void JobController::OnCheckpointFailed(const wire::RankReport& r) {
  // Every rank whose shard failed says why (a full disk fails them all): one event per save.
  if (!failed_saves_.insert({generation_, static_cast<int64_t>(r.step())}).second) return;
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = generation_row_ ? std::optional<int64_t>(generation_row_) : std::nullopt;
  ev.time_us = NowMicros();
  ev.kind = "checkpoint_write_failed";
  ev.rank = static_cast<int>(r.rank());
  ev.step = static_cast<int64_t>(r.step());
  ev.detail_json = json{{"reason", r.message()}, {"step", r.step()}}.dump();
  auto event_id = logbook_->AddEvent(ev);
  Check(event_id.status(), "event");
  metrics_->Failures("checkpoint_write_failed").Increment();
  InterventionRow i;
  i.run_id = run_id_;
  if (event_id.ok()) i.event_id = event_id.value();
  i.time_us = NowMicros();
  i.action = "continue_training";
  i.actor = "auto:default";
  i.params_json = json{{"abandoned_step", r.step()}}.dump();
  i.outcome = "the save was abandoned; older checkpoints are intact";
  Check(logbook_->AddIntervention(i).status(), "intervention");
  log_->warn("checkpoint at step {} failed: {}; training goes on", r.step(), r.message());
}

void JobController::Launch(std::optional<int64_t> cause_intervention) {
  const Choice choice = ChooseCheckpoint();
  if (choice.pause) return Pause(cause_intervention, choice.why);
  const auto& ckpt = choice.checkpoint;
  if (generation_ >= 0) store_->ErasePrefix("gen-" + std::to_string(generation_) + "/");
  ++generation_;
  first_step_seen_ = false;
  ranks_alive_.clear();
  ranks_succeeded_.clear();
  agents_stopped_.clear();
  rank_errors_.clear();
  resumed_from_ = ckpt ? ckpt->path : "";

  GenerationRow g;
  g.run_id = run_id_;
  g.number = generation_;
  g.world_size = spec_.world.world_size();
  for (int a = 0; a < agents_->agent_count(); ++a)
    g.hosts += (a ? "," : "") + agents_->agent_host(a);
  if (ckpt) g.resumed_from_step = ckpt->step;
  g.resumed_from_path = resumed_from_;
  g.cause_intervention_id = cause_intervention;
  g.started_at_us = NowMicros();
  auto row = logbook_->StartGeneration(g);
  Check(row.status(), "generation");
  generation_row_ = row.ok() ? row.value() : 0;

  const int rph = spec_.world.ranks_per_host;
  for (int a = 0; a < agents_->agent_count(); ++a) {
    wire::Envelope env;
    auto* l = env.mutable_launch_ranks();
    l->set_generation(static_cast<uint64_t>(generation_));
    l->set_world_size(static_cast<uint32_t>(spec_.world.world_size()));
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
    agents_->SendToAgent(a, env);
  }
  progress_.generation = generation_;
  progress_.live_ranks = static_cast<int>(ranks_alive_.size());
  metrics_->generation.Set(static_cast<double>(generation_));
  metrics_->live_ranks.Set(progress_.live_ranks);
  start_timer_.expires_after(std::chrono::milliseconds(spec_.limits.start_timeout_ms));
  const int64_t gen = generation_;
  start_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || generation_ != gen || first_step_seen_ || state_ != JobState::kRendezvous) return;
    HandleFailure(
        "start_timeout", -1, std::nullopt,
        json{{"generation", gen}, {"start_timeout_ms", spec_.limits.start_timeout_ms}}.dump(),
        "generation " + std::to_string(gen) + " did not reach its first step within " +
            std::to_string(spec_.limits.start_timeout_ms) + " ms");
  });
  Transition(JobState::kRendezvous,
             "generation " + std::to_string(generation_) + " launched " +
                 (ckpt ? "from " + resumed_from_ : std::string("from scratch")));
}

void JobController::DamageNewestCheckpoint(ChaosFault& f) {
  f.fired = true;
  std::string target;
  auto rows = logbook_->Checkpoints(run_id_);
  if (rows.ok()) {
    for (const auto& row : rows.value()) {
      if (row.state == "committed" && !bad_checkpoints_.count(row.path)) {
        target = row.path;
        break;
      }
    }
  }
  Status st = target.empty() ? Status::NotFound("no committed checkpoint to damage")
                             : DamageCheckpoint(target, f.how);
  InterventionRow i;
  i.run_id = run_id_;
  i.time_us = NowMicros();
  i.action = "inject_fault";
  i.actor = "chaos";
  i.params_json = json{{"fault", f.spec}, {"checkpoint", target}, {"damage", f.how}}.dump();
  i.outcome = st.ok() ? "checkpoint damaged" : "not injected: " + st.message();
  Check(logbook_->AddIntervention(i).status(), "chaos intervention");
  log_->warn("chaos: {} {} ({})", f.how, target, i.outcome);
}

void JobController::MaybeInjectChaos(int agent, const wire::RankReport& report) {
  for (auto& f : chaos_) {
    if (f.fired || static_cast<int64_t>(report.step()) < f.step) continue;
    if (f.kind == "corrupt-checkpoint" && report.rank() == 0) DamageNewestCheckpoint(f);
    if (f.kind != "kill-rank" || f.rank != static_cast<int>(report.rank())) continue;
    f.fired = true;
    InterventionRow i;
    i.run_id = run_id_;
    i.time_us = NowMicros();
    i.action = "inject_fault";
    i.actor = "chaos";
    i.params_json =
        json{{"fault", f.spec}, {"rank", f.rank}, {"at_step", report.step()}, {"signal", "SIGKILL"}}
            .dump();
    i.outcome = "signal sent";
    Check(logbook_->AddIntervention(i).status(), "chaos intervention");
    log_->warn("chaos: killing rank {} at step {} ({})", f.rank, report.step(), f.spec);
    wire::Envelope env;
    auto* s = env.mutable_signal_rank();
    s->set_generation(static_cast<uint64_t>(generation_));
    s->set_rank(static_cast<uint32_t>(f.rank));
    s->set_signal(SIGKILL);
    s->set_reason("chaos " + f.spec);
    agents_->SendToAgent(agent, env);
  }
}

void JobController::OnRankReport(int agent, const wire::RankReport& r) {
  if (static_cast<int64_t>(r.generation()) != generation_ || terminal()) return;
  switch (r.kind()) {
    case wire::RankReport::STEP: {
      if (!first_step_seen_) {
        first_step_seen_ = true;
        Check(logbook_->MarkGenerationFirstStep(generation_row_, r.at_us()), "first step");
        if (failure_at_us_) {
          metrics_->recovery_seconds.Observe(static_cast<double>(r.at_us() - *failure_at_us_) /
                                             1e6);
          failure_at_us_.reset();
        }
        fallbacks_ = 0;  // this generation restored: a later recovery starts counting afresh
        Transition(JobState::kRunning, "generation " + std::to_string(generation_) +
                                           " reached step " + std::to_string(r.step()));
      }
      if (r.rank() == 0) {
        progress_.step = static_cast<int64_t>(r.step());
        progress_.loss = r.loss();
        progress_.tokens_per_second = r.tokens_per_second();
        metrics_->step.Set(static_cast<double>(r.step()));
        metrics_->loss.Set(r.loss());
        metrics_->learning_rate.Set(r.lr());
        metrics_->grad_norm.Set(r.grad_norm());
        metrics_->tokens_per_second.Set(r.tokens_per_second());
        metrics_->tokens_seen.Set(static_cast<double>(r.tokens_seen()));
        metrics_->step_seconds.Observe(r.step_seconds());
        metrics_->moe_aux_loss.Set(r.aux_loss());
      }
      metrics_->moe_dropped_choices.Increment(static_cast<double>(r.dropped_choices()));
      MaybeInjectChaos(agent, r);
      break;
    }
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
      Check(logbook_->AddCheckpoint(c).status(), "checkpoint");
      metrics_->checkpoints_total.Increment();
      metrics_->last_checkpoint_step.Set(static_cast<double>(c.step));
      metrics_->last_checkpoint_timestamp.Set(static_cast<double>(c.committed_at_us) / 1e6);
      ApplyRetention();
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

void JobController::OnRankExited(int agent, const wire::RankExited& e) {
  if (static_cast<int64_t>(e.generation()) != generation_) return;
  const int rank = static_cast<int>(e.rank());
  ranks_alive_.erase(rank);
  progress_.live_ranks = static_cast<int>(ranks_alive_.size());
  metrics_->live_ranks.Set(progress_.live_ranks);
  if (state_ == JobState::kRecovering || terminal()) {
    // A consequence of the teardown (or of the failure being handled): not a new detection.
    log_->info("rank {} of generation {} gone during teardown (code {}, signal {})", rank,
               generation_, e.exit_code(), e.signal());
    return;
  }
  if (e.signal() == 0 && e.exit_code() == 0) {
    ranks_succeeded_.insert(rank);
    if (static_cast<int>(ranks_succeeded_.size()) == spec_.world.world_size()) {
      Finish(Outcome::kSucceeded,
             "all " + std::to_string(ranks_succeeded_.size()) + " ranks finished");
    }
    return;
  }
  // Exit codes from vigil-train's contract (see worker/trainer/train_main.cc).
  std::string kind = "process_exit";
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
    detail["fault_injected_at_us"] = e.signal_sent_at_us();
    detail["detection_latency_ms"] =
        static_cast<double>(NowMicros() - e.signal_sent_at_us()) / 1000.0;
    metrics_->detection_latency_seconds.Observe(
        static_cast<double>(NowMicros() - e.signal_sent_at_us()) / 1e6);
    failure_at_us_ = e.signal_sent_at_us();
  } else {
    failure_at_us_ = e.exited_at_us();
  }
  const std::string summary = "rank " + std::to_string(rank) + " on " + agents_->agent_host(agent) +
                              (e.signal() ? " killed by signal " + std::to_string(e.signal())
                                          : " exited with code " + std::to_string(e.exit_code()));
  if (kind != "collective_error") return HandleFailure(kind, agent, rank, detail.dump(), summary);

  // When a rank or host dies, its peers' collectives fail too, and their
  // exits can reach us before the death itself (a lost host is noticed when
  // its connection drops, a peer's reaping takes a moment). Hold the first
  // collective error briefly; a root cause arriving meanwhile is recorded
  // instead, and the held symptom is dropped.
  if (held_) return;
  held_ = HeldFailure{kind, agent, rank, detail.dump(), summary};
  settle_timer_.expires_after(std::chrono::milliseconds(spec_.limits.failure_settle_ms));
  const int64_t gen = generation_;
  settle_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || !held_ || generation_ != gen || state_ == JobState::kRecovering || terminal()) return;
    HeldFailure f = std::move(*held_);
    held_.reset();
    HandleFailure(f.kind, f.agent, f.rank, f.detail_json, f.summary);
  });
}

void JobController::HandleFailure(const std::string& kind, int agent, std::optional<int> rank,
                                  const std::string& detail_json, const std::string& summary) {
  // Whatever is recorded now supersedes a held symptom (or is that symptom).
  if (held_ && held_->summary != summary) {
    log_->info("dropping the held symptom ({}) in favour of its cause", held_->summary);
  }
  held_.reset();
  settle_timer_.cancel();
  EventRow ev;
  ev.run_id = run_id_;
  ev.generation_id = generation_row_ ? std::optional<int64_t>(generation_row_) : std::nullopt;
  ev.time_us = NowMicros();
  ev.kind = kind;
  ev.host = agent >= 0 ? agents_->agent_host(agent) : "";
  ev.rank = rank;
  ev.step = progress_.step;
  ev.detail_json = detail_json;
  auto event_id = logbook_->AddEvent(ev);
  Check(event_id.status(), "event");
  metrics_->Failures(kind).Increment();
  log_->warn("detected {}: {}", kind, summary);

  InterventionRow i;
  i.run_id = run_id_;
  if (event_id.ok()) i.event_id = event_id.value();
  i.time_us = NowMicros();
  i.actor = "auto:default";
  const bool host_lost = kind == "host_lost";
  // A rank that rejects its configuration (or its corpus) rejects it again
  // after any restart: stop instead of burning the restart budget.
  const bool config_error = kind == "config_error";
  // A corrupt checkpoint costs a fallback to an older one, not a restart.
  const bool fallback = kind == "checkpoint_corrupt";
  if (host_lost || config_error || (!fallback && progress_.restarts >= spec_.limits.max_restarts)) {
    i.action = "fail_job";
    i.params_json =
        json{{"restarts", progress_.restarts}, {"max_restarts", spec_.limits.max_restarts}}.dump();
    i.outcome = host_lost      ? "no spare host to replace " + ev.host
                : config_error ? "a configuration error does not go away by restarting"
                               : "restart limit reached";
    Check(logbook_->AddIntervention(i).status(), "intervention");
    Finish(Outcome::kFailed, summary + "; " + i.outcome);
    return;
  }
  const Choice choice = ChooseCheckpoint();
  if (choice.pause) {
    i.action = "pause_and_page";
    i.params_json = json{{"fallbacks", fallbacks_}}.dump();
    i.outcome = choice.why;
    Check(logbook_->AddIntervention(i).status(), "intervention");
    Finish(Outcome::kPaused, "paused: " + summary + "; " + choice.why);
    return;
  }
  const auto& ckpt = choice.checkpoint;
  i.action = fallback ? "fallback_to_older_checkpoint" : "restart_from_latest";
  i.params_json = json{{"checkpoint", ckpt ? ckpt->path : ""},
                       {"checkpoint_step", ckpt ? ckpt->step : 0},
                       {"next_generation", generation_ + 1}}
                      .dump();
  i.outcome = "ordered";
  auto iid = logbook_->AddIntervention(i);
  Check(iid.status(), "intervention");
  pending_intervention_ = iid.ok() ? std::optional<int64_t>(iid.value()) : std::nullopt;
  if (!fallback) ++progress_.restarts;
  metrics_->Restarts(kind).Increment();
  TearDownGeneration(summary);
}

void JobController::TearDownGeneration(const std::string& reason) {
  Transition(JobState::kRecovering, reason);
  FinishGeneration(reason);
  for (int a = 0; a < agents_->agent_count(); ++a) {
    wire::Envelope env;
    env.mutable_kill_generation()->set_generation(static_cast<uint64_t>(generation_));
    env.mutable_kill_generation()->set_grace_ms(static_cast<uint32_t>(spec_.limits.kill_grace_ms));
    agents_->SendToAgent(a, env);
  }
  // Agents confirm with GenerationStopped; if one never does, give up on the job
  // rather than launching beside processes that may still hold the rank slots.
  teardown_timer_.expires_after(std::chrono::milliseconds(spec_.limits.kill_grace_ms + 5000));
  const int64_t gen = generation_;
  teardown_timer_.async_wait([this, gen](boost::system::error_code ec) {
    if (ec || state_ != JobState::kRecovering || generation_ != gen) return;
    HandleFailure("host_lost", -1, std::nullopt, json{{"reason", "teardown not confirmed"}}.dump(),
                  "an agent did not confirm the teardown of generation " + std::to_string(gen));
  });
}

void JobController::OnGenerationStopped(int agent, uint64_t generation) {
  if (static_cast<int64_t>(generation) != generation_ || state_ != JobState::kRecovering) return;
  agents_stopped_.insert(agent);
  if (static_cast<int>(agents_stopped_.size()) < agents_->agent_count()) return;
  teardown_timer_.cancel();
  auto cause = pending_intervention_;
  pending_intervention_.reset();
  Launch(cause);
}

void JobController::FinishGeneration(const std::string& reason) {
  if (generation_row_)
    Check(logbook_->EndGeneration(generation_row_, NowMicros(), reason), "end generation");
}

void JobController::OnAgentLost(int agent, const std::string& why) {
  if (terminal() || state_ == JobState::kPending) return;
  HandleFailure("host_lost", agent, std::nullopt, json{{"reason", why}}.dump(),
                "agent " + agents_->agent_host(agent) + " lost: " + why);
}

void JobController::Stop(const std::string& why) {
  if (terminal()) return;
  EventRow ev;
  ev.run_id = run_id_;
  ev.time_us = NowMicros();
  ev.kind = "coordinator_stopped";
  ev.step = progress_.step;
  ev.detail_json = json{{"reason", why}}.dump();
  Check(logbook_->AddEvent(ev).status(), "event");
  Finish(Outcome::kFailed, why);
}

void JobController::Finish(Outcome outcome, const std::string& why) {
  teardown_timer_.cancel();
  FinishGeneration(why);
  const bool succeeded = outcome == Outcome::kSucceeded;
  Transition(succeeded                     ? JobState::kSucceeded
             : outcome == Outcome::kPaused ? JobState::kPaused
                                           : JobState::kFailed,
             why);
  progress_.message = why;
  const double wall = static_cast<double>(NowMicros() - progress_.started_at_us) / 1e6;
  std::optional<double> tps;
  if (succeeded && wall > 0) tps = static_cast<double>(final_tokens_) / wall;
  Check(logbook_->FinishRun(run_id_, JobStateName(state_), NowMicros(),
                            succeeded ? std::optional<int64_t>(progress_.step) : std::nullopt,
                            succeeded ? std::optional<double>(final_loss_) : std::nullopt,
                            progress_.params_digest, tps),
        "finish run");
  for (int a = 0; a < agents_->agent_count(); ++a) {
    wire::Envelope env;
    env.mutable_shutdown()->set_reason(why);
    agents_->SendToAgent(a, env);
  }
  if (on_terminal) on_terminal();
}

}  // namespace vigil::coordinator
