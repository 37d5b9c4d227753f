#include "coordinator/clock.h"

#include <algorithm>

#include "common/util.h"

namespace vigil::coordinator {

namespace {

class AsioTimer : public Timer {
 public:
  explicit AsioTimer(boost::asio::io_context& io) : timer_(io) {}
  void Start(std::chrono::milliseconds after, std::function<void()> fn) override {
    const uint64_t token = ++token_;
    armed_ = true;
    timer_.expires_after(after);
    timer_.async_wait([this, token, fn = std::move(fn)](boost::system::error_code ec) {
      // A wait that was cancelled, or replaced by a later Start, fires nothing.
      if (ec || token != token_) return;
      armed_ = false;
      fn();
    });
  }
  void Cancel() override {
    ++token_;
    armed_ = false;
    timer_.cancel();
  }
  bool armed() const override { return armed_; }

 private:
  boost::asio::steady_timer timer_;
  uint64_t token_ = 0;
  bool armed_ = false;
};

}  // namespace

int64_t AsioClock::NowMicros() const { return vigil::NowMicros(); }

int64_t AsioClock::SteadyMicros() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<Timer> AsioClock::NewTimer() { return std::make_unique<AsioTimer>(io_); }

class FakeClock::FakeTimer : public Timer {
 public:
  explicit FakeTimer(FakeClock* clock) : clock_(clock) { clock_->timers_.push_back(this); }
  ~FakeTimer() override {
    if (clock_) {
      auto& t = clock_->timers_;
      t.erase(std::remove(t.begin(), t.end(), this), t.end());
    }
  }
  void Start(std::chrono::milliseconds after, std::function<void()> fn) override {
    deadline_us_ = clock_->now_us_ + after.count() * 1000;
    fn_ = std::move(fn);
    armed_ = true;
  }
  void Cancel() override {
    armed_ = false;
    fn_ = nullptr;
  }
  bool armed() const override { return armed_; }

  FakeClock* clock_;
  int64_t deadline_us_ = 0;
  std::function<void()> fn_;
  bool armed_ = false;
};

FakeClock::~FakeClock() {
  for (FakeTimer* t : timers_) t->clock_ = nullptr;
}

std::unique_ptr<Timer> FakeClock::NewTimer() { return std::make_unique<FakeTimer>(this); }

void FakeClock::Advance(std::chrono::milliseconds ms) {
  const int64_t target = now_us_ + ms.count() * 1000;
  for (;;) {
    FakeTimer* due = nullptr;
    for (FakeTimer* t : timers_) {
      if (t->armed_ && t->deadline_us_ <= target && (!due || t->deadline_us_ < due->deadline_us_))
        due = t;
    }
    if (!due) break;
    now_us_ = std::max(now_us_, due->deadline_us_);
    due->armed_ = false;
    auto fn = std::move(due->fn_);
    due->fn_ = nullptr;
    if (fn) fn();
  }
  now_us_ = target;
}

}  // namespace vigil::coordinator
