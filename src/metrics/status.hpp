// What the daemon knows about itself, gathered in one snapshot for the
// metrics, health and diagnostics endpoints. The daemon implements
// StatusSource; everything that renders status reads only snapshots, so
// no endpoint holds a lock while it formats.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crawl/crawler.hpp"
#include "evict/evictor.hpp"
#include "index/index.hpp"
#include "metrics/heartbeats.hpp"
#include "usage/trigger.hpp"

namespace pvc {

struct CrawlStatus {
  bool running = false;
  std::uint64_t progress_files = 0;
  std::uint64_t completed = 0;
  std::uint64_t stopped = 0;
  bool have_last = false;
  CrawlStats last;
  std::uint64_t skipped_links = 0;  // summed over every crawl
  std::uint64_t skipped_foreign = 0;
  std::uint64_t skipped_errors = 0;
};

struct WatchStatus {
  bool enabled = false;
  std::string level;  // the fanotify feature level in use
  std::uint64_t events = 0;
  std::uint64_t applied = 0;
  std::uint64_t overflows = 0;
  std::uint64_t malformed = 0;
  bool rescan_pending = false;  // after an overflow, until the rescan ends
};

struct StatusSnapshot {
  double now_unix = 0;
  std::string mode;         // "crawl" or "watch"
  std::string mode_reason;  // why this mode
  Thresholds thresholds;
  double hot_window_seconds = 0;
  EvictorTotals evictor;
  IndexStats index;
  std::size_t hot_files = 0;
  CrawlStatus crawl;
  WatchStatus watch;
  std::vector<LoopState> loops;
  bool ready = false;  // the first crawl has completed
};

class StatusSource {
 public:
  virtual ~StatusSource() = default;
  virtual StatusSnapshot status() = 0;
  // Files used within the hot window, hottest first.
  virtual std::vector<FileSnapshot> hot_files(std::size_t offset,
                                              std::size_t limit) = 0;
  // Files in age order, coldest first.
  virtual std::vector<FileSnapshot> coldest_files(std::size_t offset,
                                                  std::size_t limit) = 0;
};

}  // namespace pvc
