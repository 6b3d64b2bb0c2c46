// Directory file handles -> the index's directory ids.
//
// fanotify names the directory of every event by its file handle. The
// crawl records each directory's handle (name_to_handle_at, unprivileged)
// as it reads it, and the watcher records directories created later, so an
// event is resolved with one hash lookup and no open_by_handle_at (which
// would need CAP_DAC_READ_SEARCH and a descriptor per event). Crawler
// threads and the watcher thread share it, hence its own lock.
//
// Shape, and why: a cache has nearly as many directories as files, so this
// map is as large as the index itself unless it is compact. Every key of
// one watched filesystem has the same fsid, and the handles of the
// filesystems caches live on (ext4 and xfs: 8 or 12 bytes, tmpfs: 12) fit
// in 12 bytes, so such keys are stored as 16 bytes without the fsid, in a
// table filled to 80 %: about 24 bytes per directory instead of 128.
// Anything else (another fsid, a longer handle such as btrfs's or NFS's)
// goes to a second map of whole keys.
#pragma once

#include <tsl/robin_map.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>

#include "index/index.hpp"
#include "watch/handle_key.hpp"

namespace pvc {

class DirHandles {
 public:
  DirHandles() { compact_.max_load_factor(kCompactLoad); }

  void put(const HandleKey& key, DirId dir) {
    std::lock_guard lock(mutex_);
    if (!fsid_) {
      fsid_ = key.fsid;
    }
    if (auto c = compact(key)) {
      compact_[*c] = dir;
    } else {
      wide_[key] = dir;
    }
  }
  std::optional<DirId> find(const HandleKey& key) const {
    std::lock_guard lock(mutex_);
    if (auto c = compact(key)) {
      if (auto it = compact_.find(*c); it != compact_.end()) {
        return it->second;
      }
    } else if (auto it = wide_.find(key); it != wide_.end()) {
      return it->second;
    }
    return std::nullopt;
  }
  void erase(const HandleKey& key) {
    std::lock_guard lock(mutex_);
    if (auto c = compact(key)) {
      compact_.erase(*c);
    } else {
      wide_.erase(key);
    }
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return compact_.size() + wide_.size();
  }
  // Bytes held by the tables, for the memory figures.
  std::size_t memory_bytes() const {
    std::lock_guard lock(mutex_);
    return compact_.bucket_count() * kCompactBucket +
           wide_.bucket_count() * kWideBucket;
  }

 private:
  static constexpr std::size_t kCompactBytes = 12;
  static constexpr float kCompactLoad = 0.8F;

  struct CompactKey {
    std::uint16_t type = 0;
    std::uint16_t size = 0;
    std::array<std::uint8_t, kCompactBytes> bytes{};
    friend bool operator==(const CompactKey&, const CompactKey&) = default;
  };
  struct CompactHash {
    std::size_t operator()(const CompactKey& k) const noexcept {
      std::array<std::uint64_t, 2> w{};
      std::memcpy(w.data(), &k, sizeof(k));
      // Two multiply-xorshift rounds: ext4 handles differ mostly in the
      // low bytes of the inode number, which must reach every bit.
      std::uint64_t h = (w[0] ^ 0x9e3779b97f4a7c15ULL) * 0xff51afd7ed558ccdULL;
      h = (h ^ (h >> 33U) ^ w[1]) * 0xc4ceb9fe1a85ec53ULL;
      return static_cast<std::size_t>(h ^ (h >> 33U));
    }
  };
  static_assert(sizeof(CompactKey) == 16);
  // Key and id, plus robin-hood's probe distance, 4-byte aligned.
  static constexpr std::size_t kCompactBucket =
      sizeof(CompactKey) + sizeof(DirId) + 4;
  static constexpr std::size_t kWideBucket =
      sizeof(HandleKey) + sizeof(DirId) + 8;

  std::optional<CompactKey> compact(const HandleKey& key) const {
    if (!fsid_ || key.fsid != *fsid_ || key.size > kCompactBytes ||
        key.type < 0 || key.type > UINT16_MAX) {
      return std::nullopt;
    }
    CompactKey c;
    c.type = static_cast<std::uint16_t>(key.type);
    c.size = key.size;
    std::memcpy(c.bytes.data(), key.bytes.data(), kCompactBytes);
    return c;
  }

  mutable std::mutex mutex_;
  std::optional<std::uint64_t> fsid_;
  tsl::robin_map<CompactKey, DirId, CompactHash> compact_;
  tsl::robin_map<HandleKey, DirId, HandleKeyHash> wide_;
};

}  // namespace pvc
