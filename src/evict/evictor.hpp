// The eviction loop: one step() per poll.
//
// A step reads usage, lets the trigger decide, and while an episode is
// active deletes the coldest cold files in batches sized by the remaining
// deficit, re-reading usage after every batch so the episode stops at the
// target instead of overshooting it. The same step also reclaims orphaned
// temp files and removes bucket directories that have stayed empty past
// their grace period. Nothing here waits or sleeps; the daemon calls step()
// on its schedule and tests call it directly.
#pragma once

#include <tsl/robin_set.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "evict/deleter.hpp"
#include "index/index.hpp"
#include "usage/trigger.hpp"
#include "usage/usage.hpp"

namespace pvc {

struct EvictorConfig {
  Thresholds thresholds;
  TimeNs hot_window = 60 * 60 * kNsPerSecond;
  std::size_t batch_size = 100;
  bool dir_cleanup = true;
  TimeNs dir_grace = 120 * kNsPerSecond;
  TimeNs temp_max_age = 60 * 60 * kNsPerSecond;  // 0: never reclaim
  TimeNs usage_log_interval = 60 * kNsPerSecond;
  TimeNs retry_after_failure = 60 * kNsPerSecond;
};

enum class DeleteReason { kAge, kEmergency, kTemp };
constexpr std::size_t kDeleteReasons = 3;
const char* reason_name(DeleteReason reason);

// A file the evictor removed, as reported to listeners.
struct DeletedFile {
  std::string dir_path;  // relative to the cache root
  std::string name;
  std::uint64_t bytes = 0;
  DeleteReason reason = DeleteReason::kAge;
};

// Told about every batch of deletions, after the unlinks and outside the
// index lock (the llm-d event publisher is one). Never told in a dry run.
// Must not block: the evictor calls it on its own thread between batches.
class DeletionListener {
 public:
  virtual ~DeletionListener() = default;
  virtual void on_deleted(const std::vector<DeletedFile>& files) = 0;
};

// Running totals, for the summary lines and for metrics.
struct EvictorTotals {
  std::uint64_t episodes = 0;
  std::uint64_t files_deleted[kDeleteReasons] = {};
  std::uint64_t bytes_deleted[kDeleteReasons] = {};
  std::uint64_t skipped_hot = 0;
  std::uint64_t skipped_open = 0;
  std::uint64_t skipped_changed = 0;
  std::uint64_t vanished = 0;
  std::uint64_t dirs_removed = 0;
  std::map<int, std::uint64_t> errors_by_errno;
  bool episode_active = false;
  bool stuck = false;                  // above cleanup with nothing deletable
  bool inodes_unwatched_high = false;  // inode limits off, inodes nearly out
  Usage last_usage;

  // Durations of finished episodes, as a cumulative histogram.
  static inline const std::vector<double> kEpisodeBuckets = {
      0.1, 0.5, 1, 5, 15, 60, 300, 1800};
  std::vector<std::uint64_t> episode_buckets =
      std::vector<std::uint64_t>(kEpisodeBuckets.size());
  double episode_seconds_sum = 0;
  std::uint64_t episode_seconds_count = 0;
};

class Evictor {
 public:
  Evictor(const EvictorConfig& config, SharedIndex& index,
          const UsageSource& usage, Deleter& deleter, const Clock& clock,
          const std::atomic<bool>& stop);

  // One poll: usage, trigger, deletion while needed, housekeeping.
  void step();

  // A full crawl finished; `complete` when it walked the whole tree.
  void crawl_finished(bool complete);

  // True once when the evictor needs a fresh crawl (an episode started on
  // an index that cannot satisfy it).
  bool take_rescan_request();

  EvictorTotals totals() const;

  // Called after every batch, so a long episode still shows progress to
  // the health endpoint.
  void set_progress_callback(std::function<void()> fn) {
    on_progress_ = std::move(fn);
  }

  // While held, only an emergency deletes. The daemon holds deletion
  // until the first crawl is complete (a partial index cannot say what is
  // oldest across the volume) and after lost events (the index may call a
  // file cold that was used, until a rescan merges atime in). `why` is
  // logged once when the hold first stops an episode.
  void set_hold(bool hold, std::string why = {}) {
    std::lock_guard lock(hold_mutex_);
    hold_ = hold;
    hold_why_ = std::move(why);
  }

  // Adds a listener; it must outlive the evictor.
  void add_listener(DeletionListener& listener) {
    listeners_.push_back(&listener);
  }

 private:
  struct Episode {
    double started = 0;  // monotonic seconds
    Usage start_usage;
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
    std::uint64_t skipped_hot = 0;
    bool warned_stuck = false;
    bool crawled_since_start = false;
  };
  struct WaitingDir {
    DirId dir;
    TimeNs retry_at;
    TimeNs ours_at = 0;  // when this daemon last changed it (see Deleter)
  };

  bool read_usage(Usage& out);
  void log_usage(const Usage& u, bool force);
  void warn_if_inodes_unwatched(const Usage& u);
  void start_episode(const Usage& u);
  void end_episode(const Usage& u);
  void run_episode(Usage u);
  // Deletes victims; returns how many were deleted.
  std::size_t delete_batch(const std::vector<FileSnapshot>& victims,
                           TimeNs cold_before, DeleteReason reason);
  void note_nothing_deletable(const Usage& u, const VictimSkips& skips);
  void reclaim_temps();
  void clean_dirs();
  Usage adjust_for_dry_run(Usage u) const;
  std::uint64_t pending_dir_inodes();
  void take_empty_dirs();

  EvictorConfig config_;
  SharedIndex& index_;
  const UsageSource& usage_;
  Deleter& deleter_;
  const Clock& clock_;
  const std::atomic<bool>& stop_;
  Trigger trigger_;

  Episode episode_;
  std::vector<WaitingDir> waiting_dirs_;
  tsl::robin_set<DirId> waiting_set_;  // the same ids, for de-duplication
  TimeNs last_usage_log_ = 0;
  double last_logged_percent_ = -1;
  int last_usage_error_ = 0;
  bool inode_warning_given_ = false;
  bool root_warned_ = false;
  bool read_only_warned_ = false;
  bool batch_stopped_ = false;  // the last batch hit a volume-wide fault
  TimeNs next_temp_sweep_ = 0;
  std::atomic<bool> rescan_requested_{false};
  // A dry run deletes nothing, so what it would have freed is subtracted
  // from measured usage until the next crawl brings the files back.
  std::uint64_t dry_freed_bytes_ = 0;
  std::uint64_t dry_freed_files_ = 0;

  std::vector<DeletionListener*> listeners_;
  std::function<void()> on_progress_;
  // Why deletion is held, or nothing when it is not.
  std::optional<std::string> held() {
    std::lock_guard lock(hold_mutex_);
    return hold_ ? std::optional<std::string>(hold_why_) : std::nullopt;
  }

  std::mutex hold_mutex_;
  bool hold_ = false;
  std::string hold_why_;
  bool hold_logged_ = false;

  mutable std::mutex totals_mutex_;
  EvictorTotals totals_;
};

}  // namespace pvc
