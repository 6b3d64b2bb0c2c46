// Wall-clock time as the daemon sees it. File timestamps (atime, mtime) are
// wall-clock values, so last-use times are kept in the same unit: nanoseconds
// since the Unix epoch. Logic that depends on "now" takes a Clock so tests can
// move time instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>

namespace pvc {

using TimeNs = std::int64_t;

constexpr TimeNs kNsPerSecond = 1'000'000'000;

// Saturates: durations from settings can be absurdly long ("never"), and
// converting those must not overflow.
inline TimeNs seconds_to_ns(double seconds) {
  constexpr double kMaxNs = 4e18;  // about 126 years, well inside int64
  const double ns = seconds * static_cast<double>(kNsPerSecond);
  return ns >= kMaxNs    ? static_cast<TimeNs>(kMaxNs)
         : ns <= -kMaxNs ? -static_cast<TimeNs>(kMaxNs)
                         : static_cast<TimeNs>(ns);
}

inline double ns_to_seconds(TimeNs ns) {
  return static_cast<double>(ns) / static_cast<double>(kNsPerSecond);
}

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimeNs now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimeNs now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that only moves when a test moves it.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimeNs start) : now_(start) {}
  TimeNs now() const override { return now_; }
  void set(TimeNs t) { now_ = t; }
  void advance(TimeNs d) { now_ += d; }

 private:
  TimeNs now_;
};

// Monotonic seconds, for durations and deadlines that must not jump when
// the wall clock is set.
inline TimeNs monotonic_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline double monotonic_seconds() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace pvc
