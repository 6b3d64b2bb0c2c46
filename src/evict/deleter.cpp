#include "evict/deleter.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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

Deleter::DirRemoval Deleter::remove_dir(std::string_view rel,
                                        TimeNs older_than, TimeNs ours_at) {
  DirRemoval out;
  const auto slash = rel.rfind('/');
  const std::string_view parent = slash == std::string_view::npos
                                      ? std::string_view()
                                      : rel.substr(0, slash);
  const std::string name(slash == std::string_view::npos
                             ? rel
                             : rel.substr(slash + 1));
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
