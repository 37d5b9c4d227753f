#include "coordinator/job_state.h"

#include "common/util.h"
#include "common/vocabulary.h"

namespace vigil::coordinator {

const char* JobStateName(JobState s) {
  switch (s) {
    case JobState::kPending:
      return job_state::kPending;
    case JobState::kRendezvous:
      return job_state::kRendezvous;
    case JobState::kRunning:
      return job_state::kRunning;
    case JobState::kRecovering:
      return job_state::kRecovering;
    case JobState::kSucceeded:
      return job_state::kSucceeded;
    case JobState::kFailed:
      return job_state::kFailed;
    case JobState::kPaused:
      return job_state::kPaused;
    case JobState::kCancelled:
      return job_state::kCancelled;
  }
  return "unknown";
}

bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

bool JobStateMachine::Allowed(JobState from, JobState to) {
  using S = JobState;
  if (IsTerminal(from)) return false;
  if (to == S::kFailed || to == S::kCancelled) return true;
  switch (from) {
    case S::kPending:
      return to == S::kRendezvous || to == S::kPaused;
    case S::kRendezvous:
      return to == S::kRunning || to == S::kRecovering || to == S::kSucceeded || to == S::kPaused;
    case S::kRunning:
      return to == S::kRecovering || to == S::kSucceeded || to == S::kPaused;
    case S::kRecovering:
      return to == S::kRendezvous || to == S::kPaused;
    case S::kPaused:
      return to == S::kRendezvous;
    default:
      return false;
  }
}

JobStateMachine::JobStateMachine(OnMove on_move) : on_move_(std::move(on_move)) {}

bool JobStateMachine::Move(JobState to, const std::string& why) {
  if (to == state_) return true;
  if (!Allowed(state_, to)) {
    ++illegal_moves_;
    spdlog::error("BUG: illegal job state move {} -> {} refused ({})", JobStateName(state_),
                  JobStateName(to), why);
    return false;
  }
  Enter(to, why);
  return true;
}

void JobStateMachine::Enter(JobState to, const std::string& why) {
  const JobState from = state_;
  state_ = to;
  for (auto& [timer, states] : bound_) {
    if (!states.count(to)) timer->Cancel();
  }
  if (on_move_) on_move_(from, to, why);
}

bool JobStateMachine::TakeOver(JobState to, const std::string& why) {
  if (state_ != JobState::kPending || IsTerminal(to) || to == JobState::kPending) {
    ++illegal_moves_;
    spdlog::error("BUG: illegal takeover {} -> {} refused ({})", JobStateName(state_),
                  JobStateName(to), why);
    return false;
  }
  Enter(to, why);
  return true;
}

void JobStateMachine::Bind(Timer* timer, std::initializer_list<JobState> states) {
  bound_.emplace_back(timer, std::set<JobState>(states));
}

}  // namespace vigil::coordinator
