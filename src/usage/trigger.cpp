#include "usage/trigger.hpp"

#include <cmath>

namespace pvc {
namespace {

// Amount above `ratio` of `total`, rounded up so that freeing it reaches
// the target rather than stopping one block short.
std::uint64_t excess(std::uint64_t used, std::uint64_t total, double ratio) {
  const double allowed = std::floor(static_cast<double>(total) * ratio);
  const double over = static_cast<double>(used) - allowed;
  return over > 0 ? static_cast<std::uint64_t>(std::ceil(over)) : 0;
}

}  // namespace

Transition Trigger::update(const Usage& u) {
  const bool was_active = active();
  const double bytes = u.byte_ratio();
  if (bytes >= t_.cleanup) {
    bytes_active_ = true;
  } else if (bytes <= t_.target) {
    bytes_active_ = false;
  }
  const bool inodes_on = t_.inode_cleanup > 0 && u.total_inodes != 0;
  const double inodes = u.inode_ratio();
  if (inodes_on && inodes >= t_.inode_cleanup) {
    inodes_active_ = true;
  } else if (!inodes_on || inodes <= t_.inode_target) {
    inodes_active_ = false;
  }
  if (active() == was_active) {
    return Transition::kNone;
  }
  return active() ? Transition::kStarted : Transition::kEnded;
}

Deficit Trigger::deficit(const Usage& u) const {
  Deficit d;
  if (bytes_active_) {
    d.bytes = excess(u.used_bytes, u.capacity_bytes, t_.target);
  }
  if (inodes_active_) {
    d.inodes = excess(u.used_inodes, u.total_inodes, t_.inode_target);
  }
  return d;
}

bool Trigger::emergency(const Usage& u) const {
  return u.byte_ratio() >= t_.emergency ||
         (t_.inode_cleanup > 0 && u.inode_ratio() >= t_.emergency);
}

}  // namespace pvc
