// Goodput as the run goes: productive training time over wall time, kept
// in memory by vigild for the vigil_goodput_ratio gauge, by the one rule
// (logbook/goodput_rule.h) that `vigil logbook stats` applies to the file.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace vigil::coordinator {

class GoodputTracker {
 public:
  explicit GoodputTracker(int64_t run_started_us) : run_started_us_(run_started_us) {}

  // A generation starts from `resumed_from` (a checkpoint path, "" for a
  // fresh start): the previous one's productive time is settled.
  void GenerationStarted(const std::string& resumed_from);
  void FirstStep(int64_t at_us);
  void CheckpointCommitted(const std::string& path, int64_t at_us);
  void GenerationEnded(int64_t at_us);

  double ProductiveSeconds(int64_t now_us) const;
  double Goodput(int64_t now_us) const;

 private:
  struct Generation {
    int index = -1;
    std::optional<int64_t> first_step_us, ended_us;
  };
  int64_t run_started_us_;
  double settled_seconds_ = 0;  // generations before the current one
  Generation current_;
  // Checkpoints by path: the generation that wrote each and when it committed.
  std::map<std::string, std::pair<int, int64_t>> checkpoints_;
};

}  // namespace vigil::coordinator
