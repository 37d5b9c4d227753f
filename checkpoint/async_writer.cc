#include "checkpoint/async_writer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

namespace vigil::checkpoint {

AsyncShardWriter::AsyncShardWriter() : thread_([this] { Run(); }) {}

AsyncShardWriter::~AsyncShardWriter() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return (!has_job_ || written_) && (!has_commit_ || commit_done_); });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncShardWriter::Start(Storage* storage, std::string path, std::vector<PlannedSlice> plan,
                             std::vector<ShardPiece> pieces) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (has_job_ || has_commit_)
      throw std::logic_error("AsyncShardWriter::Start with a task still in flight");
    has_job_ = true;
    snapshot_done_ = false;
    written_ = false;
    storage_ = storage;
    path_ = std::move(path);
    plan_ = std::move(plan);
    pieces_ = std::move(pieces);
    result_.reset();
  }
  cv_.notify_all();
}

bool AsyncShardWriter::busy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_job_;
}

void AsyncShardWriter::WaitSnapshot() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return snapshot_done_; });
}

bool AsyncShardWriter::written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_job_ && written_;
}

Result<std::vector<uint64_t>> AsyncShardWriter::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!has_job_) return Status::FailedPrecondition("no shard in flight");
  cv_.wait(lock, [&] { return written_; });
  has_job_ = false;
  Result<std::vector<uint64_t>> out = std::move(*result_);
  result_.reset();
  return out;
}

size_t AsyncShardWriter::buffer_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buffer_bytes_;
}

void AsyncShardWriter::StartCommit(std::function<Result<std::string>()> commit) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (has_job_ || has_commit_)
      throw std::logic_error("AsyncShardWriter::StartCommit with a task still in flight");
    has_commit_ = true;
    commit_done_ = false;
    commit_ = std::move(commit);
  }
  cv_.notify_all();
}

bool AsyncShardWriter::committing() const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_commit_;
}

bool AsyncShardWriter::committed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return has_commit_ && commit_done_;
}

Result<std::string> AsyncShardWriter::WaitCommit() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!has_commit_) return Status::FailedPrecondition("no commit in flight");
  cv_.wait(lock, [&] { return commit_done_; });
  has_commit_ = false;
  Result<std::string> out = std::move(*commit_result_);
  commit_result_.reset();
  return out;
}

void AsyncShardWriter::Run() {
  // Training comes first where the two share a core.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] {
      return stop_ || (has_job_ && !snapshot_done_) || (has_commit_ && !commit_done_);
    });
    if (stop_) return;
    if (has_commit_ && !commit_done_) {
      auto commit = std::move(commit_);
      lock.unlock();
      Result<std::string> result = commit();
      lock.lock();
      commit_result_ = std::move(result);
      commit_done_ = true;
      cv_.notify_all();
      continue;
    }
    // The snapshot: the training thread waits for it before changing the state.
    size_t total = 0;
    for (const auto& p : pieces_) total += static_cast<size_t>(p.count);
    lock.unlock();
    if (buffer_.size() < total) buffer_.resize(total);  // grows once, then reused
    std::vector<ShardPiece> copied;
    size_t at = 0;
    for (const auto& p : pieces_) {
      std::memcpy(buffer_.data() + at, p.data, static_cast<size_t>(p.count) * sizeof(float));
      copied.push_back({buffer_.data() + at, p.count});
      at += static_cast<size_t>(p.count);
    }
    lock.lock();
    buffer_bytes_ = buffer_.size() * sizeof(float);
    snapshot_done_ = true;
    cv_.notify_all();
    lock.unlock();
    auto result = WriteShard(storage_, path_, plan_, copied);
    lock.lock();
    result_ = std::move(result);
    written_ = true;
    cv_.notify_all();
  }
}

}  // namespace vigil::checkpoint
