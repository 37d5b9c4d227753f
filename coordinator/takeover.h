// Taking over an unfinished run: what a vigild that starts on a work
// directory whose run is still `running` or `paused` (its vigild died:
// SIGKILL, a crash, a lost host) reads back from the logbook, so that it
// carries on that run rather than start another.
//
// The logbook holds what the dead vigild decided before it acted on it
// (the agent link is write-ahead), so what it read here is at least as far
// along as anything the agents were told: the generation in flight (its
// row not ended: number, world, hosts by slot, checkpoint), the checkpoint
// catalogue with each one's state, every detection and intervention (the
// playbook's windows, limits and restart loop are replayed from them), the
// restarts counted, cordoned hosts, a switched optimizer, a pause and the
// detection it answers, and the last step recorded.
//
// What it cannot know is what the agents did after the last row: that is
// what they say when they register again (their live ranks), and what the
// job controller's Adopt reconciles.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/detection.h"
#include "logbook/logbook.h"

namespace vigil::coordinator {

// What the playbook saw and did, for PlaybookEngine::Replay.
struct PlaybookHistory {
  std::vector<Detection> seen;                           // the playbook's detections
  std::vector<std::pair<std::string, int64_t>> applied;  // rule, its detection's time
  std::vector<int64_t> restarts;                         // counted restarts' detection times
};

struct RunTakeover {
  RunRow run;
  std::vector<GenerationRow> generations;  // oldest first
  std::vector<CheckpointRow> checkpoints;  // newest step first
  std::vector<EventRow> events;            // oldest first
  std::vector<InterventionRow> interventions;
  std::optional<StepRow> last_step;
  std::vector<EpochRow> epochs;  // the vigilds before this one, oldest first

  bool paused() const;
  // The newest generation, if its row was not ended (it was training, or
  // being launched, when vigild died).
  const GenerationRow* in_flight() const;
  const GenerationRow* newest() const;
  // Its hosts, by slot (the placement to restore).
  std::vector<std::string> SlotHosts() const;
  std::set<std::string> Cordoned() const;
  // Generations caused by an intervention that answered an event (as
  // `vigil logbook stats` counts restarts).
  int Restarts() const;
  std::string OptimizerOverride() const;  // the newest switch_optimizer's ("" none)
  // The restart decided after the newest generation ended and not yet
  // launched (vigild died in a recovery): its intervention and event.
  std::optional<InterventionRow> PendingRestart() const;
  // The newest event a pause_and_page answered (what a resume links to).
  std::optional<int64_t> PausedEvent() const;
  PlaybookHistory History() const;
  // When the dead vigild last wrote anything: its downtime began after this.
  int64_t LastWrittenUs() const;
};

// The newest run of job `name` in the logbook that never finished (status
// running or paused); none if every run ended.
Result<std::optional<int64_t>> FindUnfinishedRun(Logbook& logbook, const std::string& name);
Result<RunTakeover> LoadTakeover(Logbook& logbook, int64_t run_id);

}  // namespace vigil::coordinator
