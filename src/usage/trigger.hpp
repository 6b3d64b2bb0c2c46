// When to delete, and how much.
//
// Each resource (bytes, inodes) has its own hysteresis: it becomes active
// when its usage reaches the cleanup threshold and stays active until usage
// is back at the target, never stopping in between. An episode runs while
// any resource is active. The deficit is what must be freed to bring every
// active resource to its target, so each episode is sized by what is
// needed instead of deleting "while the flag is on", which on a fast disk
// empties the whole cache between two polls.
#pragma once

#include <cstdint>

#include "usage/usage.hpp"

namespace pvc {

struct Thresholds {
  double cleanup = 0.85;  // fractions of capacity
  double target = 0.70;
  double inode_cleanup = 0.85;  // 0 turns inode limits off
  double inode_target = 0.70;
  double emergency = 0.95;  // hot files may go above this
};

struct Deficit {
  std::uint64_t bytes = 0;
  std::uint64_t inodes = 0;
  bool any() const { return bytes != 0 || inodes != 0; }
};

enum class Transition { kNone, kStarted, kEnded };

class Trigger {
 public:
  explicit Trigger(const Thresholds& t) : t_(t) {}

  Transition update(const Usage& u);
  bool active() const { return bytes_active_ || inodes_active_; }
  bool bytes_active() const { return bytes_active_; }
  bool inodes_active() const { return inodes_active_; }
  Deficit deficit(const Usage& u) const;
  bool emergency(const Usage& u) const;
  const Thresholds& thresholds() const { return t_; }

 private:
  Thresholds t_;
  bool bytes_active_ = false;
  bool inodes_active_ = false;
};

}  // namespace pvc
