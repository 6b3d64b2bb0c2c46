#include "usage/usage.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <utility>

namespace pvc {

double Usage::byte_ratio() const {
  return capacity_bytes == 0 ? 0.0
                             : static_cast<double>(used_bytes) /
                                   static_cast<double>(capacity_bytes);
}

double Usage::inode_ratio() const {
  return total_inodes == 0 ? 0.0
                           : static_cast<double>(used_inodes) /
                                 static_cast<double>(total_inodes);
}

UsageMonitor::UsageMonitor(std::string path, std::uint64_t budget_bytes,
                           std::function<std::uint64_t()> cache_bytes)
    : path_(std::move(path)),
      budget_bytes_(budget_bytes),
      cache_bytes_(std::move(cache_bytes)) {}

UsageReading UsageMonitor::read() const {
  UsageReading r;
  struct statvfs vfs {};
  if (::statvfs(path_.c_str(), &vfs) != 0) {
    r.error = errno;
    return r;
  }
  const std::uint64_t unit = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize;
  if (budget_bytes_ != 0) {
    r.usage.used_bytes = cache_bytes_();
    r.usage.capacity_bytes = budget_bytes_;
  } else {
    const std::uint64_t used = (vfs.f_blocks - vfs.f_bfree) * unit;
    r.usage.used_bytes = used;
    r.usage.capacity_bytes = used + vfs.f_bavail * unit;
  }
  r.usage.total_inodes = vfs.f_files;
  r.usage.used_inodes = vfs.f_files - vfs.f_ffree;
  return r;
}

}  // namespace pvc
