// The clock vigild's logic reads and sets its timers on. Passed in, so the
// detectors, the settling of symptoms, the playbook's windows and the
// restart limits run on fake time in the tests: milliseconds, no sleeping.
//
// AsioClock is the real one: the wall clock (microseconds since the epoch,
// the time base rank reports and logbook rows share) and timers on the
// event loop. FakeClock is its twin for tests: time moves only when the test
// advances it, and timers fire then, in deadline order, on the caller's
// thread.
//
// Neither is thread-safe: both belong to the event loop.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace vigil::coordinator {

// A one-shot timer. Starting it again replaces what it was waiting for;
// cancelling it (or destroying it) means its callback never runs.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual void Start(std::chrono::milliseconds after, std::function<void()> fn) = 0;
  virtual void Cancel() = 0;
  virtual bool armed() const = 0;
};

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch.
  virtual int64_t NowMicros() const = 0;
  // Microseconds of a clock that never jumps (for durations only).
  virtual int64_t SteadyMicros() const = 0;
  virtual std::unique_ptr<Timer> NewTimer() = 0;
};

class AsioClock : public Clock {
 public:
  explicit AsioClock(boost::asio::io_context& io) : io_(io) {}
  int64_t NowMicros() const override;
  int64_t SteadyMicros() const override;
  std::unique_ptr<Timer> NewTimer() override;

 private:
  boost::asio::io_context& io_;
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_us = 1'800'000'000'000'000) : now_us_(start_us) {}
  ~FakeClock() override;
  int64_t NowMicros() const override { return now_us_; }
  int64_t SteadyMicros() const override { return now_us_; }
  std::unique_ptr<Timer> NewTimer() override;
  // Moves time forward by `ms`, firing each timer that falls due on the way
  // at its own deadline (a callback may start timers; those fire too if due).
  void Advance(std::chrono::milliseconds ms);
  void AdvanceMs(int64_t ms) { Advance(std::chrono::milliseconds(ms)); }

 private:
  class FakeTimer;
  int64_t now_us_;
  std::vector<FakeTimer*> timers_;
};

}  // namespace vigil::coordinator
