// The cache root and the only ways the daemon reaches below it.
//
// Every path below the root is resolved relative to a descriptor of the
// root with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV),
// so no symbolic link, ".." or mount point inside the tree can lead an
// operation outside it. Kernels without openat2 get an equivalent walk, one
// component at a time with O_NOFOLLOW and a device check. Data files are
// never opened; directories are opened with O_NOATIME where permitted.
//
// The root itself is reached the same way from the mount path: the cache
// directory setting names a directory inside the volume, and a link there
// (or a mount of something else) would turn "delete the coldest files of
// this volume" into deleting files of another one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/unique_fd.hpp"

namespace pvc {

// Where the cache root is: `base`, a directory the operator names (the
// mount path; a link in it is the operator's choice), and `below`, a
// relative path inside it that is reached without following any link and
// without leaving base's mount.
struct RootLocation {
  std::string base;
  std::string below;  // "" when the root is base itself

  // base/below, for messages and for noticing a replaced root.
  std::string path() const;
};

class CacheRoot {
 public:
  // Opens the root at `where`. Returns an invalid root and sets `err` when
  // it cannot: ELOOP when `below` is or passes through a symbolic link,
  // EXDEV when it leaves base's mount, ENOTDIR when it is not a directory.
  static CacheRoot open(const RootLocation& where, int& err);
  // A root that is `path` itself (tests, benchmarks).
  static CacheRoot open(const std::string& path, int& err) {
    return open(RootLocation{path, ""}, err);
  }

  CacheRoot() = default;
  bool valid() const { return fd_.valid(); }
  int fd() const { return fd_.get(); }
  dev_t dev() const { return dev_; }
  const std::string& path() const { return path_; }
  // True when the directory at `path` is no longer the one this root holds
  // (deleted, or deleted and recreated).
  bool stale() const;

  // A directory below the root, for reading (`for_reading`) or as an
  // O_PATH anchor for *at() calls. `rel` is "" for the root itself.
  // Returns an invalid descriptor and sets `err` on failure.
  UniqueFd open_dir(std::string_view rel, bool for_reading, int& err) const;

  // A subdirectory of an already open directory, never through a link,
  // never onto another filesystem or mount.
  UniqueFd open_child_dir(int parent_fd, const char* name, int& err) const;

  // Whether an open directory is on the root's mount (EXDEV in `err` if
  // not).
  bool same_mount(int fd, int& err) const;

 private:
  UniqueFd fd_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::uint64_t mnt_id_ = 0;  // 0 when the kernel does not report it
  std::string path_;
};

}  // namespace pvc
