#include "coordinator/checkpoint_catalog.h"

#include <algorithm>
#include <map>

#include "checkpoint/checkpoint.h"
#include "checkpoint/retention.h"
#include "common/util.h"
#include "common/vocabulary.h"

namespace vigil::coordinator {

namespace cs = checkpoint_state;

CheckpointProbe ManifestProbe(checkpoint::Storage* storage) {
  return [storage](const std::string& path) -> Result<double> {
    auto reader = checkpoint::CheckpointReader::Open(storage, path);
    if (!reader.ok()) return reader.status();
    return reader.value()->manifest().lr_scale;
  };
}

CheckpointCatalog::CheckpointCatalog(boost::asio::io_context& io, Clock* clock, Journal* journal,
                                     const CheckpointSpec& spec, std::string checkpoint_dir,
                                     checkpoint::Storage* storage, CheckpointProbe probe,
                                     boost::asio::any_io_executor file_work)
    : io_(io),
      clock_(clock),
      journal_(journal),
      spec_(spec),
      dir_(std::move(checkpoint_dir)),
      storage_(storage),
      probe_(std::move(probe)),
      log_(MakeLogger("checkpoints")),
      choose_timer_(clock->NewTimer()),
      probes_(file_work ? file_work : probe_pool_.get_executor()),
      deletions_(file_work ? file_work : delete_pool_.get_executor()) {}

CheckpointCatalog::~CheckpointCatalog() { FinishFileWork(); }

void CheckpointCatalog::SetState(int64_t id, const std::string& state,
                                 const std::string& new_path) {
  journal_->SetCheckpointState(id, state, clock_->NowMicros(), new_path);
  Remember(id, state, new_path);
}

void CheckpointCatalog::Remember(int64_t id, const std::string& state,
                                 const std::string& new_path) {
  for (auto& row : rows_) {
    if (row.id != id) continue;
    row.state = state;
    if (!new_path.empty()) row.path = new_path;
  }
}

void CheckpointCatalog::Restore(std::vector<CheckpointRow> rows) {
  std::stable_sort(rows.begin(), rows.end(), [](const CheckpointRow& a, const CheckpointRow& b) {
    return a.step != b.step ? a.step > b.step : a.id > b.id;
  });
  rows_ = std::move(rows);
  for (const auto& row : rows_) {
    if (row.state == cs::kCorrupt) bad_.insert(row.path);
  }
}

CheckpointRow CheckpointCatalog::Add(CheckpointRow c) {
  bad_.erase(c.path);
  c.id = journal_->AddCheckpoint(c);
  rows_.insert(std::find_if(rows_.begin(), rows_.end(),
                            [&](const CheckpointRow& o) { return o.step <= c.step; }),
               c);
  return c;
}

std::string CheckpointCatalog::NewestUsable() const {
  for (const auto& row : rows_) {
    if (row.state == cs::kCommitted && !bad_.count(row.path)) return row.path;
  }
  return "";
}

bool CheckpointCatalog::MarkCorrupt(const std::string& path) {
  if (!bad_.insert(path).second) return false;
  ++fallbacks_;
  std::vector<int64_t> ids;
  for (const auto& row : rows_) {
    if (row.path == path) ids.push_back(row.id);
  }
  for (int64_t id : ids) SetState(id, cs::kCorrupt);
  return true;
}

struct CheckpointCatalog::Walk {
  uint64_t id = 0;
  CheckpointWant want;
  OnCorrupt on_corrupt;
  std::function<void(CheckpointChoice)> done;
  std::vector<CheckpointRow> rows;  // as they were when the choice began, newest first
  size_t next = 0;                  // the candidate walked to (being probed)
  int to_skip = 0;                  // a rollback's: usable ones still to go back over
  bool any = false;                 // anything was ever committed
  CheckpointChoice choice;
};

const CheckpointRow* CheckpointCatalog::Find(int64_t id) const {
  for (const auto& row : rows_) {
    if (row.id == id) return &row;
  }
  return nullptr;
}

bool CheckpointCatalog::Usable(const CheckpointRow& row) const {
  return row.state == cs::kCommitted && !bad_.count(row.path);
}

Status CheckpointCatalog::Choose(const CheckpointWant& want, OnCorrupt on_corrupt,
                                 std::function<void(CheckpointChoice)> done) {
  if (walk_) return Status::FailedPrecondition("a checkpoint choice is under way already");
  walk_ = std::make_unique<Walk>();
  walk_->id = ++walks_;
  walk_->want = want;
  walk_->on_corrupt = std::move(on_corrupt);
  walk_->done = std::move(done);
  walk_->rows = rows_;
  walk_->to_skip = want.rollback;
  const uint64_t id = walk_->id;
  choose_timer_->Start(std::chrono::milliseconds(spec_.choose_timeout_ms), [this, id] {
    if (!walk_ || walk_->id != id) return;
    const std::string path =
        walk_->next < walk_->rows.size() ? walk_->rows[walk_->next].path : std::string("?");
    CheckpointChoice c;
    c.pause = true;
    c.why =
        "choosing the checkpoint to resume from took longer than checkpoint.choose_timeout_ms (" +
        std::to_string(spec_.choose_timeout_ms) + " ms), reading " + path +
        "; is the file system answering?";
    log_->error("{}", c.why);
    Done(std::move(c));
  });
  Continue();
  return Status::Ok();
}

void CheckpointCatalog::CancelChoice() {
  choose_timer_->Cancel();
  walk_.reset();
}

void CheckpointCatalog::Done(CheckpointChoice c) {
  choose_timer_->Cancel();
  auto done = std::move(walk_->done);
  walk_.reset();
  done(std::move(c));
}

std::set<std::string> CheckpointCatalog::InChoice() const {
  std::set<std::string> out;
  if (!walk_) return out;
  for (const auto& row : walk_->choice.rolled_back) out.insert(row.path);
  // The candidate being probed and every older one it may fall back to.
  for (size_t i = walk_->next; i < walk_->rows.size(); ++i) out.insert(walk_->rows[i].path);
  return out;
}

void CheckpointCatalog::Continue() {
  Walk& w = *walk_;
  for (; w.next < w.rows.size(); ++w.next) {
    // Its state now: corrupt or rolled back since the choice began counts.
    const CheckpointRow* row = Find(w.rows[w.next].id);
    if (!row) continue;
    // Retention's (done, under way or failed part way): as if never there.
    if (row->state == cs::kDeleted || row->state == cs::kDeleting ||
        row->state == cs::kDeleteFailed)
      continue;
    w.any = true;
    if (!Usable(*row)) continue;
    // Taken at or after a numerical anomaly: it may hold the bad update.
    if (w.want.before_step && row->step >= *w.want.before_step) {
      w.choice.rolled_back.push_back(*row);
      continue;
    }
    if (fallbacks_ > spec_.max_fallbacks) break;
    boost::asio::post(probes_, [this, id = w.id, path = row->path] {
      Result<double> lr_scale = probe_(path);
      boost::asio::post(io_,
                        [this, id, lr_scale = std::move(lr_scale)] { OnProbed(id, lr_scale); });
    });
    return;
  }
  Finish();
}

void CheckpointCatalog::OnProbed(uint64_t walk, const Result<double>& lr_scale) {
  if (!walk_ || walk_->id != walk) return;  // cancelled, or timed out
  Walk& w = *walk_;
  const CheckpointRow* now = Find(w.rows[w.next].id);
  if (!now || !Usable(*now)) {  // refused by other means while it was probed
    ++w.next;
    return Continue();
  }
  const CheckpointRow row = *now;
  ++w.next;
  if (!lr_scale.ok()) {
    MarkCorrupt(row.path);
    if (w.on_corrupt) w.on_corrupt(row.path, lr_scale.status().message());
    return Continue();
  }
  if (fallbacks_ > spec_.max_fallbacks) return Finish();
  if (w.to_skip > 0) {  // a playbook's rollback: go further back
    --w.to_skip;
    w.choice.rolled_back.push_back(row);
    return Continue();
  }
  w.choice.checkpoint = row;
  w.choice.lr_scale = lr_scale.value();
  Done(std::move(w.choice));
}

void CheckpointCatalog::Finish() {
  // No candidate was chosen.
  Walk& w = *walk_;
  CheckpointChoice c = std::move(w.choice);
  const bool rolling_back = w.want.rollback > 0 || w.want.before_step;
  const bool fresh = !w.any;  // nothing was ever committed: a fresh start
  // Rolled back past every checkpoint: the start is the one state known good.
  if (fresh || (fallbacks_ <= spec_.max_fallbacks && rolling_back)) return Done(std::move(c));
  c.rolled_back.clear();
  c.pause = true;
  c.why = fallbacks_ > spec_.max_fallbacks
              ? std::to_string(fallbacks_) +
                    " corrupt checkpoints skipped, past checkpoint.max_fallbacks (" +
                    std::to_string(spec_.max_fallbacks) + ")"
              : "no committed checkpoint is left that verifies";
  c.why += "; the job is paused instead of starting over. Check them with `vigil ckpt verify " +
           dir_ + "/step-*` and see the checkpoint_corrupt events";
  Done(std::move(c));
}

void CheckpointCatalog::RollBack(const std::vector<CheckpointRow>& rows, int64_t next_generation) {
  for (const auto& row : rows) {
    Remember(row.id, cs::kRolledBack);  // never chosen again, from now
    const std::string aside = row.path + ".rolled-back.gen-" + std::to_string(next_generation);
    journal_->AfterCommit([this, id = row.id, path = row.path, step = row.step, aside] {
      const Status st = storage_->Rename(path, aside);
      if (!st.ok()) log_->warn("cannot move rolled-back {} aside: {}", path, st.ToString());
      log_->warn("rolled back over {} (step {})", path, step);
      const std::string moved_to = st.ok() ? aside : "";
      journal_->SetCheckpointState(id, cs::kRolledBack, clock_->NowMicros(), moved_to);
      boost::asio::post(io_, [this, id, moved_to] { Remember(id, cs::kRolledBack, moved_to); });
    });
  }
}

std::vector<CheckpointRow> CheckpointCatalog::RetentionVictims(
    std::set<std::string> protected_paths) {
  protected_paths.merge(InChoice());
  std::vector<int64_t> steps;
  std::set<int64_t> protect;
  std::map<int64_t, CheckpointRow> by_step;
  for (const auto& row : rows_) {
    if (row.state != cs::kCommitted || bad_.count(row.path)) continue;
    steps.push_back(row.step);
    by_step.emplace(row.step, row);  // newest row of a step first
    if (protected_paths.count(row.path)) protect.insert(row.step);
  }
  std::vector<CheckpointRow> victims;
  for (int64_t step :
       checkpoint::RetentionVictims(steps, spec_.keep_last, spec_.keep_every, protect)) {
    victims.push_back(by_step.at(step));
    Remember(victims.back().id, cs::kDeleting);  // neither resumed from nor chosen again
  }
  return victims;
}

void CheckpointCatalog::Delete(const CheckpointRow& row) {
  journal_->AfterCommit([this, id = row.id, path = row.path] {
    boost::asio::post(deletions_, [this, id, path] {
      const Status st = storage_->RemoveAll(path);
      // A deletion that failed part way may have left a part: never loaded.
      const std::string state = st.ok() ? cs::kDeleted : cs::kDeleteFailed;
      // Recorded from here, so that a vigild stopping meanwhile records it too.
      journal_->SetCheckpointState(id, state, vigil::NowMicros());
      if (st.ok()) {
        log_->info("retention: deleted {}", path);
      } else {
        log_->warn("retention: could not delete {}: {}; it is never resumed from", path,
                   st.ToString());
      }
      boost::asio::post(io_, [this, id, state] { Remember(id, state); });
    });
  });
}

}  // namespace vigil::coordinator
