// How full the cache's volume is, measured the way df measures it.
//
// Bytes: used / (used + available to unprivileged writers). Counting only
// f_bfree would hide the blocks reserved for root, and vLLM, which does not
// run as root, would hit ENOSPC while the evictor still saw headroom.
// Inodes: (f_files - f_ffree) / f_files; a volume of tiny blocks runs out
// of inodes first. With a byte budget (--max-cache-bytes) the cache shares
// its volume with other data, and byte usage is the cache's own allocated
// bytes over the budget.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace pvc {

struct Usage {
  std::uint64_t used_bytes = 0;
  std::uint64_t capacity_bytes = 0;  // used + available
  std::uint64_t used_inodes = 0;
  std::uint64_t total_inodes = 0;  // 0 when the filesystem has no limit

  double byte_ratio() const;
  double inode_ratio() const;
  double byte_percent() const { return byte_ratio() * 100.0; }
  double inode_percent() const { return inode_ratio() * 100.0; }
};

struct UsageReading {
  Usage usage;
  int error = 0;  // errno of a failed statvfs; usage is then invalid
};

// Where usage figures come from; tests substitute their own.
class UsageSource {
 public:
  virtual ~UsageSource() = default;
  virtual UsageReading read() const = 0;
  // True when byte usage is the cache's own bytes over a budget.
  virtual bool budgeted() const = 0;
  virtual const std::string& path() const = 0;
};

// Reads usage of the filesystem holding `path` with statvfs. When
// `budget_bytes` is not zero, byte usage is `cache_bytes()` over the budget
// instead (inode usage still comes from the filesystem).
class UsageMonitor final : public UsageSource {
 public:
  UsageMonitor(std::string path, std::uint64_t budget_bytes,
               std::function<std::uint64_t()> cache_bytes);
  UsageReading read() const override;
  bool budgeted() const override { return budget_bytes_ != 0; }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  std::uint64_t budget_bytes_;
  std::function<std::uint64_t()> cache_bytes_;
};

}  // namespace pvc
