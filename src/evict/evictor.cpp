#include "evict/evictor.hpp"

#include <spdlog/spdlog.h>
#include <tsl/robin_map.h>

#include <algorithm>
#include <limits>

#include "common/escape.hpp"
#include "common/format.hpp"
#include "common/sys_error.hpp"

namespace pvc {
namespace {

// Temp files are looked at this often; orphans are rare and not urgent.
constexpr TimeNs kTempSweepPeriod = 10 * kNsPerSecond;
// A victim found open is looked at again after this long.
constexpr TimeNs kOpenRetry = 10 * kNsPerSecond;
// At most this many orphans or directories are handled per step, so that
// housekeeping never delays the next usage check noticeably.
constexpr std::size_t kHousekeepingPerStep = 1000;

double unix_seconds(TimeNs t) {
  return ns_to_seconds(t);
}

std::string file_path(const FileSnapshot& f) {
  return f.dir_path.empty() ? f.name : f.dir_path + "/" + f.name;
}

}  // namespace

const char* reason_name(DeleteReason reason) {
  switch (reason) {
    case DeleteReason::kAge:
      return "age";
    case DeleteReason::kEmergency:
      return "emergency";
    case DeleteReason::kTemp:
      return "temp";
  }
  return "?";
}

Evictor::Evictor(const EvictorConfig& config, SharedIndex& index,
                 const UsageSource& usage, Deleter& deleter, const Clock& clock,
                 const std::atomic<bool>& stop)
    : config_(config),
      index_(index),
      usage_(usage),
      deleter_(deleter),
      clock_(clock),
      stop_(stop),
      trigger_(config.thresholds) {}

void Evictor::step() {
  Usage u;
  if (read_usage(u)) {
    warn_if_inodes_unwatched(u);
    const Transition t = trigger_.update(u);
    log_usage(u, trigger_.active());
    if (t == Transition::kStarted) {
      start_episode(u);
    } else if (t == Transition::kEnded) {
      end_episode(u);
    }
    if (trigger_.active()) {
      run_episode(u);
    }
  }

  reclaim_temps();
  clean_dirs();
}

bool Evictor::read_usage(Usage& out) {
  const UsageReading r = usage_.read();
  if (r.error != 0) {
    // Said once per kind of failure, not once per poll.
    if (r.error != last_usage_error_) {
      spdlog::warn("usage: {}; eviction waits until it works again",
                   sys_message("statvfs", usage_.path(), r.error));
      last_usage_error_ = r.error;
    }
    return false;
  }
  if (last_usage_error_ != 0) {
    spdlog::info("usage: statvfs on {} works again",
                 escape_bytes(usage_.path()));
    last_usage_error_ = 0;
  }
  out = adjust_for_dry_run(r.usage);
  // Emptied bucket directories are removed after their grace period. The
  // inodes they hold are as good as free: counting them as used would make
  // an inode episode delete files until the directories' inodes were paid
  // for twice.
  out.used_inodes -=
      std::min<std::uint64_t>(out.used_inodes, pending_dir_inodes());
  std::lock_guard lock(totals_mutex_);
  totals_.last_usage = out;
  return true;
}

Usage Evictor::adjust_for_dry_run(Usage u) const {
  if (deleter_.dry_run() == DryRun::kNo) {
    return u;
  }
  if (!usage_.budgeted()) {
    u.used_bytes -= std::min(u.used_bytes, dry_freed_bytes_);
  }
  u.used_inodes -= std::min(u.used_inodes, dry_freed_files_);
  return u;
}

void Evictor::take_empty_dirs() {
  const TimeNs retry_at = monotonic_ns() + config_.dir_grace;
  for (const DirId dir :
       index_.with([](Index& i) { return i.take_empty_dirs(); })) {
    if (waiting_set_.insert(dir).second) {
      waiting_dirs_.push_back({dir, retry_at});
    }
  }
}

std::uint64_t Evictor::pending_dir_inodes() {
  if (!config_.dir_cleanup) {
    return 0;
  }
  take_empty_dirs();
  return index_.with([&](Index& i) {
    std::uint64_t n = 0;
    for (const WaitingDir& w : waiting_dirs_) {
      n += i.dirs_freed_by_removing(w.dir);
    }
    return n;
  });
}

void Evictor::warn_if_inodes_unwatched(const Usage& u) {
  // With inode limits off, a volume of tiny blocks can fill its inode
  // table while bytes look fine; the writer then fails with ENOSPC. Say
  // so once per crossing instead of staying silent.
  constexpr double kInodeWarnRatio = 0.85;
  if (config_.thresholds.inode_cleanup > 0 || u.total_inodes == 0) {
    return;
  }
  const bool high = u.inode_ratio() >= kInodeWarnRatio;
  if (high && !inode_warning_given_) {
    spdlog::warn(
        "inode usage is {:.2f}% but inode limits are off "
        "(--inode-cleanup-threshold 0): nothing is deleted for inodes, and "
        "writers will fail with ENOSPC when no inode is left",
        u.inode_percent());
  }
  inode_warning_given_ = high;
  std::lock_guard lock(totals_mutex_);
  totals_.inodes_unwatched_high = high;
}

void Evictor::log_usage(const Usage& u, bool force) {
  const TimeNs now = clock_.now();
  const TimeNs mono = monotonic_ns();
  const double percent = u.byte_percent();
  // Every check is logged during an episode; while idle, a line per
  // interval or when usage moved by a point, so that log scrapers keep a
  // time series without the log growing by a line every half second.
  const bool due = mono - last_usage_log_ >= config_.usage_log_interval;
  const bool moved = std::abs(percent - last_logged_percent_) >= 1.0;
  if (!force && !due && !moved) {
    return;
  }
  last_usage_log_ = mono;
  last_logged_percent_ = percent;
  spdlog::info("CACHE_PERCENT_LOG:{:.3f},{:.2f},{}", unix_seconds(now), percent,
               usage_.budgeted() ? "budget" : "statvfs");
  spdlog::debug("usage: {} of {} ({:.2f}%), inodes {} of {} ({:.2f}%)",
                format_bytes(u.used_bytes), format_bytes(u.capacity_bytes),
                percent, u.used_inodes, u.total_inodes, u.inode_percent());
}

void Evictor::start_episode(const Usage& u) {
  episode_ = Episode{};
  episode_.started = monotonic_seconds();
  episode_.start_usage = u;
  {
    std::lock_guard lock(totals_mutex_);
    ++totals_.episodes;
    totals_.episode_active = true;
  }
  spdlog::info("DELETION_START:{:.3f},{:.2f}", unix_seconds(clock_.now()),
               u.byte_percent());
  spdlog::info(
      "episode started: bytes {:.2f}% (cleanup {:.1f}%), inodes {:.2f}% "
      "(cleanup {:.1f}%); freeing {} and {} inodes to reach target",
      u.byte_percent(), config_.thresholds.cleanup * 100, u.inode_percent(),
      config_.thresholds.inode_cleanup * 100,
      format_bytes(trigger_.deficit(u).bytes), trigger_.deficit(u).inodes);
}

void Evictor::end_episode(const Usage& u) {
  const double seconds = monotonic_seconds() - episode_.started;
  const TimeNs cold_before = clock_.now() - config_.hot_window;
  const std::size_t hot =
      index_.with([&](Index& i) { return i.count_used_after(cold_before); });
  spdlog::info("DELETION_END:{:.3f},{:.2f}", unix_seconds(clock_.now()),
               u.byte_percent());
  spdlog::info(
      "episode ended: {} {} files ({}) in {:.2f}s; usage {:.2f}% -> "
      "{:.2f}%, inodes {:.2f}% -> {:.2f}%; {} hot files kept",
      deleter_.dry_run() == DryRun::kYes ? "would have deleted" : "deleted",
      episode_.files, format_bytes(episode_.bytes), seconds,
      episode_.start_usage.byte_percent(), u.byte_percent(),
      episode_.start_usage.inode_percent(), u.inode_percent(), hot);
  std::lock_guard lock(totals_mutex_);
  totals_.episode_active = false;
  totals_.stuck = false;
  for (std::size_t b = 0; b < EvictorTotals::kEpisodeBuckets.size(); ++b) {
    if (seconds <= EvictorTotals::kEpisodeBuckets[b]) {
      ++totals_.episode_buckets[b];
    }
  }
  totals_.episode_seconds_sum += seconds;
  ++totals_.episode_seconds_count;
}

void Evictor::run_episode(Usage u) {
  while (!stop_.load(std::memory_order_relaxed)) {
    const Deficit d = trigger_.deficit(u);
    if (!d.any()) {
      return;
    }
    const TimeNs now = clock_.now();
    const bool emergency = trigger_.emergency(u);
    if (auto why = held(); why && !emergency) {
      if (!hold_logged_) {
        hold_logged_ = true;
        spdlog::info(
            "deletion waits {} (unless usage reaches the emergency "
            "threshold)",
            *why);
      }
      return;
    }
    hold_logged_ = false;
    VictimQuery q;
    q.now = monotonic_ns();  // deferrals are kept on the monotonic clock
    q.cold_before = now - config_.hot_window;
    q.allow_hot = emergency;
    q.max_files = config_.batch_size;
    q.max_bytes = std::numeric_limits<std::uint64_t>::max();
    if (d.bytes != 0) {
      q.max_bytes = d.bytes;
    } else {
      q.max_files = std::min<std::uint64_t>(q.max_files, d.inodes);
    }
    VictimSkips skips;
    const auto victims =
        index_.with([&](Index& i) { return i.select_victims(q, skips); });
    if (victims.empty()) {
      note_nothing_deletable(u, skips);
      return;
    }
    batch_stopped_ = false;
    const std::size_t deleted = delete_batch(
        victims, emergency ? std::numeric_limits<TimeNs>::max() : q.cold_before,
        emergency ? DeleteReason::kEmergency : DeleteReason::kAge);
    if (batch_stopped_) {
      return;  // a volume-wide fault; the next poll tries again
    }

    if (on_progress_) {
      on_progress_();
    }
    if (!read_usage(u)) {
      return;
    }
    log_usage(u, true);
    if (trigger_.update(u) == Transition::kEnded) {
      end_episode(u);
      return;
    }
    if (deleted == 0) {
      // Everything chosen turned out hot, changed or failing; the index
      // has been corrected, so the next query returns different files.
      continue;
    }
  }
}

std::size_t Evictor::delete_batch(const std::vector<FileSnapshot>& victims,
                                  TimeNs cold_before, DeleteReason reason) {
  struct Applied {
    FileId id;
    DeleteOutcome outcome;
  };
  // The index's paths are relative to the root; if the directory at the
  // root's path is no longer the one held, they would resolve in a tree
  // that has moved (perhaps out of the cache). The daemon reopens the
  // root and rescans.
  if (!deleter_.root_current()) {
    if (!root_warned_) {
      root_warned_ = true;
      spdlog::warn(
          "the cache root was renamed, deleted or replaced; "
          "deletion waits until it is reopened and rescanned");
    }
    rescan_requested_ = true;
    batch_stopped_ = true;
    return 0;
  }
  root_warned_ = false;
  std::vector<Applied> applied;
  applied.reserve(victims.size());
  for (const FileSnapshot& v : victims) {
    applied.push_back({v.id, deleter_.remove_file(v, cold_before)});
    if (applied.back().outcome.error == EROFS) {
      break;  // the whole volume refuses: see below
    }
  }
  deleter_.forget_anchor();
  const bool read_only =
      !applied.empty() &&
      applied.back().outcome.result == DeleteResult::kFailed &&
      applied.back().outcome.error == EROFS;
  if (read_only) {
    // A read-only volume is one fault, not one per file: say it once, do
    // not defer the files, and try again on the next poll.
    if (!read_only_warned_) {
      read_only_warned_ = true;
      spdlog::warn(
          "the volume is read-only ({}); deletion retries every "
          "poll",
          describe_errno(EROFS));
    }
    applied.pop_back();
    batch_stopped_ = true;
  } else if (read_only_warned_ && !applied.empty()) {
    read_only_warned_ = false;
    spdlog::info("the volume is writable again");
  }

  const TimeNs now = clock_.now();
  const TimeNs mono = monotonic_ns();
  std::size_t deleted = 0;
  std::uint64_t bytes = 0;
  std::size_t hot = 0;
  index_.with([&](Index& index) {
    for (std::size_t k = 0; k < applied.size(); ++k) {
      const FileSnapshot& v = victims[k];
      const DeleteOutcome& o = applied[k].outcome;
      if (!index.file_is(v.id, v.ino)) {
        continue;  // gone, or its id reused, while the batch ran
      }
      switch (o.result) {
        case DeleteResult::kDeleted:
          index.remove_file(v.id);
          ++deleted;
          bytes += o.bytes;
          break;
        case DeleteResult::kVanished:
          index.remove_file(v.id);
          break;
        case DeleteResult::kHot:
        case DeleteResult::kChanged:
          // Learn what the re-check saw; the file moves up the age order.
          index.observe(v.dir, v.name, v.kind, o.seen,
                        MergePolicy::kStatIsTruth, now);
          hot += o.result == DeleteResult::kHot ? 1 : 0;
          break;
        case DeleteResult::kOpen:
          // Open is transient; look again soon, not in this episode's
          // next batch.
          index.defer_file(v.id, mono + kOpenRetry);
          break;
        case DeleteResult::kFailed:
          index.defer_file(v.id, mono + config_.retry_after_failure);
          break;
      }
    }
  });

  if (deleted != 0 && !listeners_.empty() &&
      deleter_.dry_run() == DryRun::kNo) {
    std::vector<DeletedFile> gone;
    gone.reserve(deleted);
    for (std::size_t k = 0; k < applied.size(); ++k) {
      if (applied[k].outcome.result == DeleteResult::kDeleted) {
        gone.push_back({victims[k].dir_path, victims[k].name,
                        applied[k].outcome.bytes, reason});
      }
    }
    for (DeletionListener* listener : listeners_) {
      listener->on_deleted(gone);
    }
  }

  std::lock_guard lock(totals_mutex_);
  for (std::size_t k = 0; k < applied.size(); ++k) {
    const FileSnapshot& v = victims[k];
    const DeleteOutcome& o = applied[k].outcome;
    switch (o.result) {
      case DeleteResult::kDeleted:
        if (deleter_.dry_run() == DryRun::kYes) {
          spdlog::info("dry run: would delete {} ({}, last used {:.0f}s ago)",
                       escape_bytes(file_path(v)), format_bytes(o.bytes),
                       ns_to_seconds(now - v.last_use));
          dry_freed_bytes_ += o.bytes;
          ++dry_freed_files_;
        } else {
          spdlog::debug("deleted {} ({}, {}, last used {:.0f}s ago)",
                        escape_bytes(file_path(v)), format_bytes(o.bytes),
                        reason_name(reason), ns_to_seconds(now - v.last_use));
        }
        break;
      case DeleteResult::kVanished:
        ++totals_.vanished;
        spdlog::debug("already gone: {}", escape_bytes(file_path(v)));
        break;
      case DeleteResult::kHot:
        ++totals_.skipped_hot;
        spdlog::debug("kept {}: used since it was chosen",
                      escape_bytes(file_path(v)));
        break;
      case DeleteResult::kOpen:
        ++totals_.skipped_open;
        spdlog::debug("kept {}: open right now", escape_bytes(file_path(v)));
        break;
      case DeleteResult::kChanged:
        ++totals_.skipped_changed;
        spdlog::debug("kept {}: replaced since it was chosen",
                      escape_bytes(file_path(v)));
        break;
      case DeleteResult::kFailed:
        ++totals_.errors_by_errno[o.error];
        // A failing file is deferred for retry_after_failure, so this
        // line appears at most once per file per period.
        spdlog::warn("cannot delete: {}; retrying in {:.0f}s",
                     sys_message(o.failed_call, file_path(v), o.error),
                     ns_to_seconds(config_.retry_after_failure));
        break;
    }
  }
  const auto r = static_cast<std::size_t>(reason);
  totals_.files_deleted[r] += deleted;
  totals_.bytes_deleted[r] += bytes;
  episode_.files += deleted;
  episode_.bytes += bytes;
  episode_.skipped_hot += hot;
  return deleted;
}

void Evictor::note_nothing_deletable(const Usage& u, const VictimSkips& s) {
  if (!episode_.crawled_since_start) {
    // The index may simply not know the cold files yet.
    rescan_requested_ = true;
  }
  {
    std::lock_guard lock(totals_mutex_);
    totals_.stuck = episode_.crawled_since_start;
  }
  if (episode_.warned_stuck || !episode_.crawled_since_start) {
    return;
  }
  episode_.warned_stuck = true;
  const std::size_t files =
      index_.with([](Index& i) { return i.file_count(); });
  spdlog::warn(
      "usage {:.2f}% is above cleanup but nothing can be deleted: the "
      "index holds {} files, {} (hot files: {}, open: {}, failing: {}); "
      "usage can only fall once files cool down{}",
      u.byte_percent(), files,
      files == 0 ? "none of them found by the crawl" : "none of them cold",
      s.hot != 0 ? "yes" : "no", s.open, s.backoff,
      config_.thresholds.emergency < 1.0
          ? fmt::format(" or usage reaches the emergency threshold {:.1f}%",
                        config_.thresholds.emergency * 100)
          : std::string());
}

void Evictor::crawl_finished(bool complete) {
  if (complete) {
    episode_.crawled_since_start = trigger_.active();
    // Orphans the crawl found are looked at on the next step.
    next_temp_sweep_ = 0;
    // A dry run's files are all back in the index now.
    dry_freed_bytes_ = 0;
    dry_freed_files_ = 0;
  }
}

bool Evictor::take_rescan_request() {
  return rescan_requested_.exchange(false);
}

EvictorTotals Evictor::totals() const {
  std::lock_guard lock(totals_mutex_);
  return totals_;
}

void Evictor::reclaim_temps() {
  const TimeNs now = clock_.now();
  if (config_.temp_max_age == 0 || monotonic_ns() < next_temp_sweep_) {
    return;
  }
  next_temp_sweep_ = monotonic_ns() + kTempSweepPeriod;
  const TimeNs before = now - config_.temp_max_age;
  const auto orphans = index_.with(
      [&](Index& i) { return i.stale_temps(before, kHousekeepingPerStep); });
  if (orphans.empty()) {
    return;
  }
  const std::size_t deleted =
      delete_batch(orphans, before, DeleteReason::kTemp);
  if (deleted != 0) {
    spdlog::info("{} {} orphaned temp files unchanged for {:.0f} min",
                 deleter_.dry_run() == DryRun::kYes ? "would reclaim (dry run)"
                                                    : "reclaimed",
                 deleted, ns_to_seconds(config_.temp_max_age) / 60);
  }
}

void Evictor::clean_dirs() {
  if (!config_.dir_cleanup) {
    return;
  }
  take_empty_dirs();
  const TimeNs now = clock_.now();
  const TimeNs mono = monotonic_ns();
  std::size_t handled = 0;
  std::size_t removed = 0;
  std::vector<WaitingDir> still_waiting;
  tsl::robin_map<DirId, TimeNs> parents;  // dir -> when we changed it
  for (const WaitingDir& w : waiting_dirs_) {
    if (w.retry_at > mono || handled >= kHousekeepingPerStep) {
      still_waiting.push_back(w);
      continue;
    }
    ++handled;
    DirId parent = kNoId;
    const std::string rel = index_.with([&](Index& i) {
      if (!i.dir_live(w.dir)) {
        return std::string();
      }
      parent = i.dir_parent(w.dir);
      return i.dir_path(w.dir);
    });
    if (rel.empty()) {
      waiting_set_.erase(w.dir);
      continue;
    }
    const Deleter::DirRemoval r =
        deleter_.remove_dir(rel, now - config_.dir_grace, w.ours_at);
    if (r.error == EAGAIN) {
      still_waiting.push_back(
          {w.dir, mono + config_.dir_grace / 4 + 1, w.ours_at});
      continue;
    }
    waiting_set_.erase(w.dir);
    if (r.error == 0 || r.error == ENOENT) {
      index_.with([&](Index& i) { i.remove_dir(w.dir); });
      removed += r.error == 0 ? 1 : 0;
      spdlog::debug("removed empty directory {}", escape_bytes(rel));
      // Removing this directory changed its parent; if that was the only
      // change in the grace period, the parent may go next without
      // waiting a whole grace period more.
      if (r.parent_quiet && parent != kNoId) {
        parents[parent] = r.changed_at;
      }
    } else if (r.error != ENOTEMPTY) {
      spdlog::debug("cannot remove directory: {}",
                    sys_message("unlinkat", rel, r.error));
    }
  }
  deleter_.forget_anchor();
  waiting_dirs_ = std::move(still_waiting);
  // The index queued the emptied parents; carry the "our change" times.
  take_empty_dirs();
  if (!parents.empty()) {
    for (WaitingDir& w : waiting_dirs_) {
      if (auto it = parents.find(w.dir); it != parents.end()) {
        w.retry_at = mono;
        w.ours_at = it->second;
      }
    }
  }
  if (removed != 0) {
    std::lock_guard lock(totals_mutex_);
    totals_.dirs_removed += removed;
  }
}

}  // namespace pvc
