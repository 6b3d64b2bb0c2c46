// Liveness of the daemon's loops. Each loop beats when it makes progress;
// a loop that has not beaten within its deadline is stalled, and the
// health endpoint says which. A loop that is idle by design (no crawl
// running) is parked and never stalls.
//
// Tests need a stalled loop on demand: stall_for_test() makes a loop's
// beats be ignored, which exercises everything downstream of a real stall
// (deadline arithmetic, the 503 and its body) without hanging a thread.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace pvc {

struct LoopState {
  std::string name;
  double last_progress = 0;  // monotonic seconds
  double last_progress_unix = 0;
  double deadline = 0;  // seconds allowed between beats
  bool parked = false;
  bool stalled = false;
};

class Heartbeats {
 public:
  void add(const std::string& name, double deadline_seconds);
  void beat(const std::string& name);
  // The loop has no work by design (e.g. no crawl is running).
  void park(const std::string& name);
  void stall_for_test(const std::string& name);
  std::vector<LoopState> snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, LoopState> loops_;
  std::string stalled_for_test_;
};

}  // namespace pvc
