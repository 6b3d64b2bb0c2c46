#include "metrics/heartbeats.hpp"

#include "common/clock.hpp"

namespace pvc {
namespace {

double unix_now() {
  return ns_to_seconds(SystemClock().now());
}

}  // namespace

void Heartbeats::add(const std::string& name, double deadline_seconds) {
  std::lock_guard lock(mutex_);
  LoopState& s = loops_[name];
  s.name = name;
  s.deadline = deadline_seconds;
  s.last_progress = monotonic_seconds();
  s.last_progress_unix = unix_now();
}

void Heartbeats::beat(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (name == stalled_for_test_) {
    return;
  }
  LoopState& s = loops_[name];
  s.last_progress = monotonic_seconds();
  s.last_progress_unix = unix_now();
  s.parked = false;
}

void Heartbeats::park(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (name == stalled_for_test_) {
    return;
  }
  LoopState& s = loops_[name];
  s.parked = true;
  s.last_progress = monotonic_seconds();
  s.last_progress_unix = unix_now();
}

void Heartbeats::stall_for_test(const std::string& name) {
  std::lock_guard lock(mutex_);
  stalled_for_test_ = name;
  auto it = loops_.find(name);
  if (it != loops_.end()) {
    it->second.parked = false;
  }
}

std::vector<LoopState> Heartbeats::snapshot() const {
  const double now = monotonic_seconds();
  std::lock_guard lock(mutex_);
  std::vector<LoopState> out;
  out.reserve(loops_.size());
  for (const auto& [name, s] : loops_) {
    LoopState copy = s;
    copy.stalled = !s.parked && now - s.last_progress > s.deadline;
    out.push_back(copy);
  }
  return out;
}

}  // namespace pvc
