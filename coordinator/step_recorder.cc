#include "coordinator/step_recorder.h"

#include <algorithm>

namespace vigil::coordinator {

void StepRecorder::OnRank0Step(const wire::RankReport& r, int64_t generation_row) {
  progress_->step = static_cast<int64_t>(r.step());
  progress_->loss = r.loss();
  progress_->tokens_per_second = r.tokens_per_second();
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
  const int64_t stride = std::max<int64_t>(1, spec_.schedule.steps / kCurvePoints);
  const int64_t step = static_cast<int64_t>(r.step());
  if (curve_generation_row_ == generation_row && (step <= last_curve_step_ || step % stride != 0))
    return;
  curve_generation_row_ = generation_row;
  last_curve_step_ = step;
  StepRow row;
  row.run_id = run_id_;
  row.generation_id = generation_row;
  row.step = static_cast<int64_t>(r.step());
  row.time_us = r.at_us();
  row.loss = r.loss();
  row.lr = r.lr();
  row.grad_norm = r.grad_norm();
  row.tokens_per_second = r.tokens_per_second();
  row.step_seconds = r.step_seconds();
  journal_->AddStep(row);
}

}  // namespace vigil::coordinator
