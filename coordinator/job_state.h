// The job's state machine: one enum, one table of the moves allowed, one
// place every move goes through (logged, and reported to the caller so the
// state metric follows).
//
//   from \ to    pending rendezvous running recovering succeeded failed paused cancelled
//   pending         .        x                            .        x      x       x
//   rendezvous      .        .        x         x          x        x      x       x
//   running         .        .        .         x          x        x      x       x
//   recovering      .        x        .         .          .        x      x       x
//   paused          .        x        .         .          .        x      .       x
//   succeeded, failed, cancelled: terminal, no move out.
//
//   pending -> rendezvous    the first generation launches (all agents registered)
//   rendezvous -> running    the generation reached its first step
//   rendezvous -> succeeded  every rank finished before reporting a step (resumed at the end)
//   rendezvous|running -> recovering   a failure the playbook restarts, a regrow
//   recovering -> rendezvous the old generation is torn down; the next launches
//   running -> succeeded     every rank exited 0
//   * -> failed              fail_job, the restart limit
//   * -> cancelled           vigild stopped by a signal (Ctrl-C, scancel)
//   pending|rendezvous|running|recovering -> paused   pause_and_page, no
//                            checkpoint left, a slot no spare can fill
//   paused -> rendezvous     `vigil resume`
//
// A move not in the table is a bug: it is refused (the state stays), logged
// as an error and counted (illegal_moves()), and the scenario tests fail on
// any. Moving to the state the machine is in is not a move and does nothing.
//
// Timers bound to states are cancelled when the machine moves to a state
// outside theirs: leaving a state cancels its timers.
//
// Single-threaded: the event loop's.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/clock.h"

namespace vigil::coordinator {

enum class JobState {
  kPending,
  kRendezvous,
  kRunning,
  kRecovering,
  kSucceeded,
  kFailed,
  kPaused,
  kCancelled
};
const char* JobStateName(JobState s);
bool IsTerminal(JobState s);

// What `vigil run`'s progress line and /api/v1/status show.
struct JobProgress {
  JobState state = JobState::kPending;
  int64_t generation = -1;
  int64_t step = 0;
  int64_t total_steps = 0;
  double loss = 0.0;
  double tokens_per_second = 0.0;
  int restarts = 0;
  int live_ranks = 0;
  int world_size = 0;
  int64_t run_id = 0;
  int64_t started_at_us = 0;
  std::string params_digest;
  std::string message;
};

class JobStateMachine {
 public:
  using OnMove = std::function<void(JobState from, JobState to, const std::string& why)>;
  explicit JobStateMachine(OnMove on_move = nullptr);

  JobState state() const { return state_; }
  bool terminal() const { return IsTerminal(state_); }
  static bool Allowed(JobState from, JobState to);

  // Moves to `to`; false (and nothing changes) if the table forbids it.
  bool Move(JobState to, const std::string& why);
  // A vigild that took over a run whose vigild died enters the state the
  // logbook and its agents show (running, between generations, paused):
  // from pending only, to any state that is not terminal. Outside the
  // table: no healthy job makes this move.
  bool TakeOver(JobState to, const std::string& why);
  // `timer` (owned by the caller, who keeps it alive as long as this) is
  // cancelled on every move to a state not in `states`.
  void Bind(Timer* timer, std::initializer_list<JobState> states);
  int illegal_moves() const { return illegal_moves_; }

 private:
  void Enter(JobState to, const std::string& why);
  JobState state_ = JobState::kPending;
  OnMove on_move_;
  std::vector<std::pair<Timer*, std::set<JobState>>> bound_;
  int illegal_moves_ = 0;
};

}  // namespace vigil::coordinator
