// Directory file handles -> the index's directory ids.
//
// fanotify names the directory of every event by its file handle. The
// crawl records each directory's handle (name_to_handle_at, unprivileged)
// as it reads it, and the watcher records directories created later, so an
// event is resolved with one hash lookup and no open_by_handle_at (which
// would need CAP_DAC_READ_SEARCH and a descriptor per event). Crawler
// threads and the watcher thread share it, hence its own lock.
#pragma once

#include <tsl/robin_map.h>

#include <mutex>
#include <optional>

#include "index/index.hpp"
#include "watch/handle_key.hpp"

namespace pvc {

class DirHandles {
 public:
  void put(const HandleKey& key, DirId dir) {
    std::lock_guard lock(mutex_);
    map_[key] = dir;
  }
  std::optional<DirId> find(const HandleKey& key) const {
    std::lock_guard lock(mutex_);
    if (auto it = map_.find(key); it != map_.end()) {
      return it->second;
    }
    return std::nullopt;
  }
  void erase(const HandleKey& key) {
    std::lock_guard lock(mutex_);
    map_.erase(key);
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return map_.size();
  }

 private:
  mutable std::mutex mutex_;
  tsl::robin_map<HandleKey, DirId, HandleKeyHash> map_;
};

}  // namespace pvc
