#include "fs/cache_root.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <string>

#include "common/join_path.hpp"

namespace pvc {
namespace {

// O_NOATIME is refused (EPERM) unless we own the directory or hold
// CAP_FOWNER; remember the refusal instead of paying for it on every open.
std::atomic<bool> g_noatime_allowed{true};

int dir_flags(bool for_reading) {
  int flags = O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  flags |= for_reading ? O_RDONLY : O_PATH;
  if (for_reading && g_noatime_allowed.load(std::memory_order_relaxed)) {
    flags |= O_NOATIME;
  }
  return flags;
}

int retry_without_noatime(int flags, int err) {
  if (err == EPERM && (flags & O_NOATIME) != 0) {
    g_noatime_allowed.store(false, std::memory_order_relaxed);
    return flags & ~O_NOATIME;
  }
  return -1;
}

int sys_openat2(int dirfd, const char* path, int flags, int& err) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV |
                RESOLVE_NO_MAGICLINKS;
  const long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  err = fd < 0 ? errno : 0;
  return static_cast<int>(fd);
}

// Whether some prefix of where.below is a symbolic link.
bool has_link(const RootLocation& where) {
  std::string path = where.base;
  std::size_t start = 0;
  while (start <= where.below.size()) {
    std::size_t end = where.below.find('/', start);
    if (end == std::string::npos) {
      end = where.below.size();
    }
    path += '/';
    path.append(where.below, start, end - start);
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

}  // namespace

std::string RootLocation::path() const {
  return join_path(base, below);
}

CacheRoot CacheRoot::open(const RootLocation& where, int& err) {
  // The base first, as any program opens a path it is given.
  CacheRoot root;
  const int fd = ::open(where.base.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    return root;
  }
  root.fd_.reset(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    err = errno;
    return {};
  }
  root.dev_ = st.st_dev;
  root.ino_ = st.st_ino;
  root.path_ = where.path();
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) == 0 &&
      (stx.stx_mask & STATX_MNT_ID) != 0) {
    root.mnt_id_ = stx.stx_mnt_id;
  }
  err = 0;
  if (where.below.empty()) {
    return root;
  }

  // Then the cache directory beneath it, by the same rules as every path
  // below the root; the result is the root, on the base's mount.
  UniqueFd below = root.open_dir(where.below, /*for_reading=*/true, err);
  if (!below) {
    // A mount crossing is EXDEV. A link is ELOOP or, as the last
    // component of a directory open, ENOTDIR: tell the two apart, because
    // a link is a different mistake from a file where a directory belongs.
    if (err == ENOTDIR && has_link(where)) {
      err = ELOOP;
    }
    return {};
  }
  if (::fstat(below.get(), &st) != 0) {
    err = errno;
    return {};
  }
  root.fd_ = std::move(below);
  root.ino_ = st.st_ino;
  return root;
}

bool CacheRoot::stale() const {
  struct stat now {};
  struct stat held {};
  if (::stat(path_.c_str(), &now) != 0 || ::fstat(fd_.get(), &held) != 0) {
    return true;
  }
  return held.st_nlink == 0 || now.st_ino != ino_ || now.st_dev != dev_;
}

UniqueFd CacheRoot::open_dir(std::string_view rel, bool for_reading,
                             int& err) const {
  const std::string path = rel.empty() ? std::string(".") : std::string(rel);
  int flags = dir_flags(for_reading);
  static std::atomic<bool> have_openat2{true};
  // A path too long for one call (a deep tree) takes the component walk.
  if (have_openat2.load(std::memory_order_relaxed) && path.size() < PATH_MAX) {
    int fd = sys_openat2(fd_.get(), path.c_str(), flags, err);
    if (fd < 0 && (flags = retry_without_noatime(flags, err)) >= 0) {
      fd = sys_openat2(fd_.get(), path.c_str(), flags, err);
    }
    if (fd >= 0 || err != ENOSYS) {
      return UniqueFd(fd);
    }
    have_openat2.store(false, std::memory_order_relaxed);
    flags = dir_flags(for_reading);
  }

  // No openat2: walk one component at a time, refusing links and other
  // filesystems at each step.
  UniqueFd current(::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0));
  std::size_t start = 0;
  while (start < path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string::npos) {
      end = path.size();
    }
    const std::string part = path.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      err = EXDEV;
      return {};
    }
    current = open_child_dir(current.get(), part.c_str(), err);
    if (!current) {
      return {};
    }
  }
  if (!for_reading) {
    return current;
  }
  UniqueFd reading(::openat(current.get(), ".", flags));
  err = reading ? 0 : errno;
  return reading;
}

bool CacheRoot::same_mount(int fd, int& err) const {
  // The device number alone misses bind mounts of the same filesystem,
  // so compare mount ids where the kernel reports them.
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0) {
    err = errno;
    return false;
  }
  const dev_t dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
  const bool mnt_known = mnt_id_ != 0 && (stx.stx_mask & STATX_MNT_ID) != 0;
  if (dev != dev_ || (mnt_known && stx.stx_mnt_id != mnt_id_)) {
    err = EXDEV;
    return false;
  }
  err = 0;
  return true;
}

UniqueFd CacheRoot::open_child_dir(int parent_fd, const char* name,
                                   int& err) const {
  int flags = dir_flags(true);
  int fd = ::openat(parent_fd, name, flags);
  if (fd < 0) {
    err = errno;
    if ((flags = retry_without_noatime(flags, err)) >= 0) {
      fd = ::openat(parent_fd, name, flags);
      err = fd < 0 ? errno : 0;
    }
  }
  if (fd < 0) {
    return {};
  }
  UniqueFd child(fd);
  if (!same_mount(fd, err)) {
    return {};
  }
  return child;
}

}  // namespace pvc
