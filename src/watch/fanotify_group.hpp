// The fanotify group that tells the watcher which cache files are in use.
//
// Why fanotify, and why this shape:
// - atime cannot be trusted to record use: noatime and relatime mounts
//   hide it, tools reset it, and reads through mmap or GPUDirect never
//   touch it. Every use still begins with an open, which fanotify reports.
// - Each vLLM pod reaches the volume through its own bind mount, so only a
//   filesystem mark (FAN_MARK_FILESYSTEM) sees them all; a mount mark would
//   see one pod. That needs CAP_SYS_ADMIN. A filesystem mark also reports
//   everything else on that filesystem, so the watcher drops events about
//   directories outside the cache root.
// - Events name files by file handle (FID reporting), never by descriptor:
//   the daemon opens no cache file, cannot run out of descriptors under a
//   burst, and stays out of vLLM's read path (FID groups cannot take
//   permission events at all).
// - Kernels in the field differ (RHEL 9's 5.14 with backports, Ubuntu's
//   5.15 and 6.8), so open() tries feature levels from the richest down and
//   keeps the first one that both fanotify_init() and fanotify_mark()
//   accept. Version numbers are never consulted; backports make them lie.
// - The queue stays bounded (no FAN_UNLIMITED_QUEUE): when it fills, the
//   kernel drops events and queues one FAN_Q_OVERFLOW, which the watcher
//   answers with a rescan. Memory stays fixed whatever vLLM does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/unique_fd.hpp"
#include "watch/fs_kind.hpp"

namespace pvc {

// What the group reports, richest last so that levels compare.
enum class WatchLevel : std::uint8_t {
  // "dfid-name" (5.9): parent directory handle and entry name; renames
  // arrive as separate FAN_MOVED_FROM and FAN_MOVED_TO events.
  kDfidName,
  // "dfid-name+fid": also the object's own handle on opens and closes.
  kDfidNameFid,
  // "rename+target-fid" (5.17): a rename is one FAN_RENAME event with both
  // ends, and creates, deletes and renames carry the child's handle.
  kRenameTargetFid,
};

constexpr WatchLevel kRichestWatchLevel = WatchLevel::kRenameTargetFid;

// "rename+target-fid", "dfid-name+fid", "dfid-name".
std::string_view watch_level_name(WatchLevel level);
std::optional<WatchLevel> parse_watch_level(std::string_view name);

class FanotifyGroup {
 public:
  // Large enough for ~600 typical events (~100 bytes each) per read, so a
  // full default queue of 16384 drains in about 30 calls, and far above the
  // largest single event (~1.2 KiB: three records with 128-byte handles
  // and 255-byte names), which read() must have room for.
  static constexpr std::size_t kReadBufferBytes = 64 * 1024;

  // Creates a group with a filesystem mark on the filesystem holding
  // `mount_path`, at the richest level up to `max_level` that the kernel
  // and the filesystem accept. On success `detail` lists the richer levels
  // that were refused (empty if none). On failure returns an invalid group,
  // sets `err` to the most telling errno and `detail` to what it likely
  // means and every level's refusal.
  static FanotifyGroup open(std::string_view mount_path, int& err,
                            std::string& detail,
                            WatchLevel max_level = kRichestWatchLevel);

  FanotifyGroup() = default;
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }

  WatchLevel level() const { return level_; }
  unsigned init_flags() const { return init_flags_; }
  std::uint64_t mask() const { return mask_; }
  // Whether a rename arrives as one FAN_RENAME event (otherwise as
  // FAN_MOVED_FROM and FAN_MOVED_TO).
  bool reports_renames() const {
    return level_ == WatchLevel::kRenameTargetFid;
  }
  // Events the kernel queues before it drops them and reports an overflow.
  std::uint64_t queue_events() const { return queue_events_; }
  const FsKind& fs() const { return fs_; }
  // The id every event's handles carry (statfs f_fsid).
  std::uint64_t fsid() const { return fsid_; }
  // Pods on other machines, or a user-space server, may use files without
  // this kernel seeing it: network, cluster and FUSE filesystems.
  bool events_may_be_incomplete() const { return fs_.events_may_be_incomplete; }
  const std::string& path() const { return path_; }

  // Stops events on directories themselves (FAN_ONDIR). The self-check
  // needs them; afterwards every opendir of the daemon's own crawl would
  // queue events only to be dropped, enough on a tree of a million
  // buckets to overflow the queue. The watcher learns new directories from
  // the handles in file events instead. Returns 0 or the errno.
  int stop_directory_events();

  // Reads whole queued events into `buffer` (see kReadBufferBytes).
  // Returns the bytes read; 0 with `err` = EAGAIN when the queue is empty,
  // 0 with another errno on failure. Retries EINTR.
  std::size_t read(std::span<std::uint8_t> buffer, int& err) const;

 private:
  UniqueFd fd_;
  WatchLevel level_ = WatchLevel::kDfidName;
  unsigned init_flags_ = 0;
  std::uint64_t mask_ = 0;
  std::uint64_t queue_events_ = 0;
  FsKind fs_;
  std::uint64_t fsid_ = 0;
  std::string path_;
};

}  // namespace pvc
