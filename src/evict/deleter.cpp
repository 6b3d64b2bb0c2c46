#include "evict/deleter.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/sys_error.hpp"

namespace pvc {
namespace {

TimeNs to_ns(const timespec& ts) {
  return ts.tv_sec * kNsPerSecond + ts.tv_nsec;
}

}  // namespace

Deleter::Deleter(const CacheRoot& root, DryRun dry_run)
    : root_(root), dry_run_(dry_run) {}

int Deleter::anchor(std::string_view dir_path, int& err) {
  if (dir_path.empty()) {
    err = 0;
    return root_.fd();
  }
  if (!anchor_fd_ || anchor_path_ != dir_path) {
    anchor_fd_ = root_.open_dir(dir_path, false, err);
    anchor_path_ = anchor_fd_ ? std::string(dir_path) : std::string();
    if (!anchor_fd_) {
      return -1;
    }
  }
  err = 0;
  return anchor_fd_.get();
}

DeleteOutcome Deleter::remove_file(const FileSnapshot& victim,
                                   TimeNs cold_before) {
  DeleteOutcome out;
  int err = 0;
  const int dir_fd = anchor(victim.dir_path, err);
  if (dir_fd < 0) {
    out.result =
        err == ENOENT ? DeleteResult::kVanished : DeleteResult::kFailed;
    out.error = err;
    out.failed_call = "openat2";
    return out;
  }

  struct stat st {};
  if (::fstatat(dir_fd, victim.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    out.error = errno;
    out.result =
        out.error == ENOENT ? DeleteResult::kVanished : DeleteResult::kFailed;
    out.failed_call = "fstatat";
    return out;
  }
  out.seen.ino = st.st_ino;
  out.seen.bytes = static_cast<std::uint64_t>(st.st_blocks) * 512U;
  out.seen.atime = to_ns(st.st_atim);
  out.seen.mtime = to_ns(st.st_mtim);
  if (!S_ISREG(st.st_mode) || st.st_ino != victim.ino ||
      st.st_dev != root_.dev()) {
    out.result = DeleteResult::kChanged;
    return out;
  }
  if (std::max(out.seen.atime, out.seen.mtime) > cold_before) {
    out.result = DeleteResult::kHot;
    return out;
  }

  // The lease, when held, keeps every other open out until the unlink is
  // done; it goes with the descriptor.
  UniqueFd leased;
  if (leases_ != Leases::kUnavailable) {
    leased.reset(::openat(dir_fd, victim.name.c_str(),
                          O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    const int open_err = leased ? 0 : errno;
    if (open_err == ENOENT) {
      out.result = DeleteResult::kVanished;
      return out;
    }
    const int lease_err = leased ? take_lease(leased.get(), victim) : 0;
    if (lease_err == EAGAIN || open_err == EWOULDBLOCK) {
      out.result = DeleteResult::kOpen;
      return out;
    }
  }

  if (dry_run_ == DryRun::kNo &&
      ::unlinkat(dir_fd, victim.name.c_str(), 0) != 0) {
    out.error = errno;
    out.result =
        out.error == ENOENT ? DeleteResult::kVanished : DeleteResult::kFailed;
    out.failed_call = "unlinkat";
    return out;
  }
  out.result = DeleteResult::kDeleted;
  out.bytes = out.seen.bytes;
  return out;
}

int Deleter::take_lease(int fd, const FileSnapshot& victim) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_ino != victim.ino) {
    return EAGAIN;  // replaced between the re-check and the open: leave it
  }
  if (::fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
    leases_ = Leases::kWorking;
    return 0;
  }
  const int err = errno;
  if (err == EAGAIN || err == EBUSY) {
    return EAGAIN;
  }
  // Refused for a reason that will not change: stop trying.
  leases_ = Leases::kUnavailable;
  spdlog::warn(
      "open-file check unavailable: {}; files are deleted without asking "
      "the kernel whether they are open (hot-window protection still "
      "applies)",
      sys_message("fcntl(F_SETLEASE)", victim.name, err));
  return err;
}

Deleter::DirRemoval Deleter::remove_dir(std::string_view rel, TimeNs older_than,
                                        TimeNs ours_at) {
  DirRemoval out;
  const auto slash = rel.rfind('/');
  const std::string_view parent = slash == std::string_view::npos
                                      ? std::string_view()
                                      : rel.substr(0, slash);
  const std::string name(
      slash == std::string_view::npos ? rel : rel.substr(slash + 1));
  if (name.empty() || name == "." || name == "..") {
    out.error = EINVAL;
    return out;
  }
  int err = 0;
  const int dir_fd = anchor(parent, err);
  if (dir_fd < 0) {
    out.error = err;
    return out;
  }
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    out.error = errno;
    return out;
  }
  if (!S_ISDIR(st.st_mode) || st.st_dev != root_.dev()) {
    out.error = ENOTDIR;
    return out;
  }
  // A young directory may be one a writer just created with mkdir -p and
  // is about to fill; removing it would fail the writer's create.
  const TimeNs changed = std::max(to_ns(st.st_mtim), to_ns(st.st_ctim));
  if (changed >= older_than && (ours_at == 0 || changed > ours_at)) {
    out.error = EAGAIN;
    return out;
  }
  struct stat parent_st {};
  const bool parent_known = ::fstat(dir_fd, &parent_st) == 0;
  if (dry_run_ == DryRun::kYes) {
    return out;
  }
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) {
    const int e = errno;
    out.error = e == EEXIST ? ENOTEMPTY : e;
    return out;
  }
  if (parent_known) {
    const TimeNs parent_changed =
        std::max(to_ns(parent_st.st_mtim), to_ns(parent_st.st_ctim));
    out.parent_quiet = parent_changed < older_than;
    struct timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    out.changed_at = to_ns(now);
  }
  return out;
}

}  // namespace pvc
