// Deleting one file or one directory, safely.
//
// Between the moment a file is chosen and the moment it is unlinked, the
// writer may have replaced it, a reader may have used it, or someone may
// have deleted it. So every victim is re-checked just before the unlink,
// relative to a descriptor of its directory that was resolved beneath the
// cache root without following links: still there, still a regular file,
// still the same inode, still cold. A vanished file is a normal race and
// counts as neither a deletion nor an error.
//
// Whether a file is open right now is asked of the kernel itself: the
// deleter takes a write lease on the victim (F_SETLEASE, F_WRLCK), which
// the kernel grants only when no other descriptor or memory mapping of the
// file exists anywhere on this node, and unlinks while holding it. An open
// that races the unlink waits for the lease to be released and then finds
// the name gone, the same as a cache miss. Where leases are refused (not
// the file's owner without CAP_LEASE, or a filesystem without them) the
// deleter says so once and goes on without this check.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.hpp"
#include "common/unique_fd.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"

namespace pvc {

enum class DryRun : bool { kNo, kYes };

enum class DeleteResult {
  kDeleted,   // unlinked (or would have been, in a dry run)
  kVanished,  // already gone
  kHot,       // used since it was chosen; left alone
  kOpen,      // open or mapped by some process right now; left alone
  kChanged,   // replaced or no longer a regular file; left alone
  kFailed,    // the unlink or the re-check failed; see `error`
};

struct DeleteOutcome {
  DeleteResult result = DeleteResult::kFailed;
  std::uint64_t bytes = 0;  // allocated bytes freed
  int error = 0;
  const char* failed_call = "";
  FileObservation seen;  // the re-check's stat, when it got that far
};

class Deleter {
 public:
  Deleter(const CacheRoot& root, DryRun dry_run);

  // Removes `victim` unless the re-check finds it used after
  // `cold_before` (pass INT64_MAX to skip that check in an emergency).
  DeleteOutcome remove_file(const FileSnapshot& victim, TimeNs cold_before);

  struct DirRemoval {
    int error = 0;  // 0, or ENOTEMPTY (a writer got there first), EAGAIN
                    // (changed within the grace period), another errno
    // The parent had been unchanged for the grace period before this
    // removal changed it, at `changed_at`: for its own removal that
    // change does not count.
    bool parent_quiet = false;
    TimeNs changed_at = 0;
  };

  // Removes the empty directory `rel` if it has not changed since
  // `older_than`. A change at or before `ours_at` (non-zero) was the
  // removal of one of its children by this deleter and does not count.
  DirRemoval remove_dir(std::string_view rel, TimeNs older_than,
                        TimeNs ours_at = 0);

  DryRun dry_run() const { return dry_run_; }
  // Whether the open-file check (write leases) is in use.
  bool leases_work() const { return leases_ != Leases::kUnavailable; }

  // Drops the directory descriptor kept for consecutive victims in one
  // directory. Called at the end of every batch: a descriptor follows its
  // directory when it is renamed, even out of the cache root, so none is
  // kept from one batch to the next.
  void forget_anchor() {
    anchor_fd_.reset();
    anchor_path_.clear();
  }

  // False (and nothing may be deleted) when the root this deleter holds is
  // no longer the directory at the cache root's path: renamed away, or
  // deleted and recreated.
  bool root_current() const { return root_.valid() && !root_.stale(); }

 private:
  int anchor(std::string_view dir_path, int& err);

  enum class Leases { kUntried, kWorking, kUnavailable };
  // Takes a write lease on `fd`: 0, EAGAIN when the file is open
  // elsewhere, or the errno that makes leases unusable here.
  int take_lease(int fd, const FileSnapshot& victim);

  const CacheRoot& root_;
  DryRun dry_run_;
  Leases leases_ = Leases::kUntried;
  // The last directory resolved: consecutive victims often share one.
  std::string anchor_path_;
  UniqueFd anchor_fd_;
};

}  // namespace pvc
