#include "logbook/logbook_writer.h"

#include <chrono>

namespace vigil {

Result<std::unique_ptr<LogbookWriter>> LogbookWriter::Open(
    const std::string& path, std::function<void(const Status&)> on_error) {
  auto db = Logbook::Open(path, false);
  if (!db.ok()) return db.status();
  auto ids = db.value()->MaxIds();
  if (!ids.ok()) return ids.status();
  return std::unique_ptr<LogbookWriter>(
      new LogbookWriter(std::move(db.value()), ids.value(), std::move(on_error)));
}

LogbookWriter::LogbookWriter(std::unique_ptr<Logbook> db, LogbookIds ids,
                             std::function<void(const Status&)> on_error)
    : db_(std::move(db)), on_error_(std::move(on_error)), ids_(ids) {
  thread_ = std::thread([this] { Run(); });
}

LogbookWriter::~LogbookWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void LogbookWriter::Queue(Item item) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(item));
    ++queued_;
  }
  wake_.notify_one();
}

int64_t LogbookWriter::AddEvent(EventRow e) {
  e.id = ++ids_.event;
  Queue({[e](Logbook& db) { return db.AddEvent(e).status(); }, nullptr});
  return e.id;
}

int64_t LogbookWriter::AddIntervention(InterventionRow i) {
  i.id = ++ids_.intervention;
  Queue({[i](Logbook& db) { return db.AddIntervention(i).status(); }, nullptr});
  return i.id;
}

int64_t LogbookWriter::StartGeneration(GenerationRow g) {
  g.id = ++ids_.generation;
  Queue({[g](Logbook& db) { return db.StartGeneration(g).status(); }, nullptr});
  return g.id;
}

int64_t LogbookWriter::AddCheckpoint(CheckpointRow c) {
  c.id = ++ids_.checkpoint;
  Queue({[c](Logbook& db) { return db.AddCheckpoint(c).status(); }, nullptr});
  return c.id;
}

void LogbookWriter::AddStep(const StepRow& step) {
  Queue({[step](Logbook& db) { return db.AddSteps({step}); }, nullptr});
}

void LogbookWriter::MarkGenerationFirstStep(int64_t generation_id, int64_t at_us) {
  Queue({[=](Logbook& db) { return db.MarkGenerationFirstStep(generation_id, at_us); }, nullptr});
}

void LogbookWriter::EndGeneration(int64_t generation_id, int64_t ended_at_us,
                                  const std::string& reason) {
  Queue(
      {[=](Logbook& db) { return db.EndGeneration(generation_id, ended_at_us, reason); }, nullptr});
}

void LogbookWriter::SetCheckpointState(int64_t checkpoint_id, const std::string& state,
                                       int64_t at_us, const std::string& new_path) {
  Queue({[=](Logbook& db) { return db.SetCheckpointState(checkpoint_id, state, at_us, new_path); },
         nullptr});
}

void LogbookWriter::SetRunStatus(int64_t run_id, const std::string& status) {
  Queue({[=](Logbook& db) { return db.SetRunStatus(run_id, status); }, nullptr});
}

void LogbookWriter::FinishRun(int64_t run_id, const std::string& status, int64_t ended_at_us,
                              std::optional<int64_t> final_step, std::optional<double> final_loss,
                              const std::string& params_digest,
                              std::optional<double> tokens_per_second) {
  Queue({[=](Logbook& db) {
           return db.FinishRun(run_id, status, ended_at_us, final_step, final_loss, params_digest,
                               tokens_per_second);
         },
         nullptr});
}

void LogbookWriter::AfterCommit(std::function<void()> fn) { Queue({nullptr, std::move(fn)}); }

void LogbookWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = queued_;
  drained_.wait(lock, [&] { return done_ >= target; });
}

void LogbookWriter::Fence(int64_t epoch, std::function<void(int64_t)> on_fenced) {
  std::lock_guard<std::mutex> lock(mu_);
  fence_epoch_ = epoch;
  on_fenced_ = std::move(on_fenced);
}

bool LogbookWriter::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_ == queued_;
}

void LogbookWriter::Run() {
  while (true) {
    std::deque<Item> batch;
    int64_t fence = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything is written
      batch.swap(queue_);
      fence = fence_epoch_;
    }
    if (fenced_) {
      // A newer vigild has the run: nothing of this one's is written or done.
      std::lock_guard<std::mutex> lock(mu_);
      done_ += batch.size();
      drained_.notify_all();
      continue;
    }
    // Every write of the batch in one transaction, then its callbacks: each
    // callback's writes (those queued before it) are then committed.
    auto delay = std::chrono::milliseconds(10);
    while (true) {
      Status st = db_->Begin();
      if (st.ok() && fence > 0) {
        auto newest = db_->NewestEpoch();
        if (!newest.ok()) st = newest.status();
        if (newest.ok() && newest.value() > fence) {
          db_->Rollback();
          fenced_ = true;
          std::function<void(int64_t)> tell;
          {
            std::lock_guard<std::mutex> lock(mu_);
            tell = on_fenced_;
          }
          if (tell) tell(newest.value());
          break;
        }
      }
      for (size_t i = 0; st.ok() && i < batch.size(); ++i) {
        if (!batch[i].op) continue;
        Status w = batch[i].op(*db_);
        if (w.ok()) continue;
        // A statement refused on its own (a constraint) is reported and
        // dropped; an error that ended the transaction (a full disk, I/O)
        // fails the batch, which is tried again.
        if (db_->InTransaction()) {
          if (on_error_) on_error_(w);
        } else {
          st = w;
        }
      }
      if (st.ok()) st = db_->Commit();
      if (st.ok()) break;
      if (db_->InTransaction()) db_->Rollback();
      if (on_error_) on_error_(st);
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::milliseconds(1000));
    }
    if (!fenced_) {
      ++commits_;
      for (auto& item : batch) {
        if (item.then) item.then();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ += batch.size();
    }
    drained_.notify_all();
  }
}

}  // namespace vigil
