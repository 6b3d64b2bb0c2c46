// The crawl: a parallel walk of the cache tree that fills the index.
//
// One "spine" walker reads the directories above the buckets (model, rank,
// dtype directories; few of them) and hands every first-level bucket it
// meets to the crawler that owns it (see partition.hpp). Crawlers walk
// their buckets depth first with getdents64 and fstatat relative to
// directory descriptors. Anything that is not a bucket is still walked, by
// the spine, so a layout the walker does not recognise yields its files all
// the same, only with less parallelism.
//
// The walk never opens a data file (fstatat does not change atime), never
// follows a link, never leaves the root's mount, and treats a file or
// directory that vanishes mid-walk as the normal race it is.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "common/clock.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"

namespace pvc {

struct CrawlOptions {
  unsigned crawlers = 8;
  unsigned bucket_width = 0;  // 0: any 2 to 4 hex digits
  MergePolicy policy = MergePolicy::kStatIsTruth;
  // Called (on crawler threads) with each directory read and its id; watch
  // mode records the directory's file handle here.
  std::function<void(int fd, DirId dir)> on_dir;
};

struct CrawlStats {
  std::uint64_t files = 0;  // blocks and temp files indexed
  std::uint64_t dirs = 0;
  std::uint64_t buckets = 0;   // first-level buckets handed to crawlers
  std::uint64_t links = 0;     // symbolic links skipped
  std::uint64_t foreign = 0;   // directories on another mount, skipped
  std::uint64_t vanished = 0;  // ENOENT races
  std::uint64_t errors = 0;    // other failures (permission, I/O)
  std::uint64_t too_deep = 0;  // directories below the depth limit
  double seconds = 0;
  bool complete = false;  // the whole tree was walked without a stop
};

// Live progress of a running crawl, readable from other threads.
struct CrawlProgress {
  std::atomic<std::uint64_t> files{0};
  std::atomic<std::uint64_t> dirs{0};
  std::atomic<bool> running{false};
};

class Crawler {
 public:
  Crawler(SharedIndex& index, const Clock& clock, CrawlOptions options,
          const std::atomic<bool>& stop);

  // Walks the whole tree below `root` once. Marks a new crawl generation
  // in the index and, if the walk completed, drops what it did not see.
  CrawlStats run(const CacheRoot& root);

  const CrawlProgress& progress() const { return progress_; }
  // See CrawlOptions::on_dir. Set before the first run().
  void set_dir_callback(std::function<void(int fd, DirId dir)> fn) {
    options_.on_dir = std::move(fn);
  }

 private:
  SharedIndex& index_;
  const Clock& clock_;
  CrawlOptions options_;
  const std::atomic<bool>& stop_;
  CrawlProgress progress_;
};

}  // namespace pvc
