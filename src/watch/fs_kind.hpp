// What kind of filesystem the cache lives on, and whether fanotify can see
// every use of it.
//
// fanotify reports what passes through this kernel's VFS. On a local
// filesystem that is every access; on a filesystem shared between machines
// (NFS, CephFS, Lustre, GPFS, SMB) or served from user space (FUSE, 9p)
// pods on other nodes read the same files without this kernel hearing of
// it, so a file can look cold while it is hot elsewhere. The watcher uses
// this to warn and to keep checking atime there. Types are recognised by
// statfs f_type, which is what the kernel itself uses to tell them apart.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace pvc {

struct FsKind {
  std::uint32_t magic = 0;  // statfs f_type
  std::string_view name;    // "ext4", "nfs", ... or "unknown"
  // Accesses may happen where this kernel does not see them.
  bool events_may_be_incomplete = false;
};

// The kind of filesystem with statfs f_type `magic`.
FsKind fs_kind_of_magic(std::uint32_t magic);

// The kind of filesystem `fd` is on. Sets `err` on failure.
FsKind fs_kind_of(int fd, int& err);

// "ext4" or "unknown (0x12345678)".
std::string describe(const FsKind& kind);

}  // namespace pvc
