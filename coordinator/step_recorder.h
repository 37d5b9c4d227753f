// Rank 0's step reports, recorded: the job's progress (what `vigil run` and
// /api/v1/status show), the training metrics, and the logbook's training
// curve (every step of a run up to kCurvePoints steps long, a stride of
// them beyond, and each generation's first step).
//
// Single-threaded: the event loop's.
#pragma once

#include <cstdint>

#include "common/job_spec.h"
#include "common/vigil.pb.h"
#include "coordinator/job_state.h"
#include "coordinator/journal.h"
#include "coordinator/metrics.h"

namespace vigil::coordinator {

class StepRecorder {
 public:
  // Steps of a run the logbook's `steps` table holds at most (about; plus
  // each generation's first).
  static constexpr int64_t kCurvePoints = 20000;

  StepRecorder(const JobSpec& spec, Journal* journal, CoordinatorMetrics* metrics, int64_t run_id,
               JobProgress* progress)
      : spec_(spec), journal_(journal), metrics_(metrics), run_id_(run_id), progress_(progress) {}
  // Rank 0 finished a step of the generation whose logbook row is `generation_row`.
  // A report sent again (an agent resends what no vigild acked) records
  // nothing twice.
  void OnRank0Step(const wire::RankReport& r, int64_t generation_row);
  // A vigild that took the run over: the curve holds `generation_row`'s
  // steps up to `last_step`.
  void Resume(int64_t generation_row, int64_t last_step) {
    curve_generation_row_ = generation_row;
    last_curve_step_ = last_step;
  }

 private:
  const JobSpec& spec_;
  Journal* journal_;
  CoordinatorMetrics* metrics_;
  int64_t run_id_;
  JobProgress* progress_;
  int64_t curve_generation_row_ = 0;  // the generation whose steps the curve has
  int64_t last_curve_step_ = -1;      // its newest step recorded
};

}  // namespace vigil::coordinator
