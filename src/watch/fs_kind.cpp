#include "watch/fs_kind.hpp"

#include <fmt/format.h>
#include <sys/statfs.h>

#include <array>
#include <cerrno>

namespace pvc {
namespace {

struct KnownFs {
  std::uint32_t magic;
  std::string_view name;
  bool shared;  // accesses may come from elsewhere than this kernel
};

// Magic numbers from the kernel's include/uapi/linux/magic.h and, for the
// out-of-tree ones (Lustre, GPFS, ZFS, BeeGFS), from their sources.
constexpr std::array kKnown = {
    KnownFs{0xEF53, "ext4", false},  // ext2 and ext3 share it
    KnownFs{0x58465342, "xfs", false},
    KnownFs{0x9123683E, "btrfs", false},
    KnownFs{0x01021994, "tmpfs", false},
    KnownFs{0x858458F6, "ramfs", false},
    KnownFs{0x794C7630, "overlayfs", false},
    KnownFs{0x2FC12FC1, "zfs", false},
    KnownFs{0xF2F52010, "f2fs", false},
    KnownFs{0xCA451A4E, "bcachefs", false},
    KnownFs{0x6969, "nfs", true},
    KnownFs{0x00C36400, "ceph", true},
    KnownFs{0x0BD00BD0, "lustre", true},
    KnownFs{0x47504653, "gpfs", true},
    KnownFs{0x19830326, "beegfs", true},
    KnownFs{0x65735546, "fuse", true},  // also virtiofs, JuiceFS, s3fs...
    KnownFs{0x01021997, "9p", true},
    KnownFs{0xFF534D42, "cifs", true},
    KnownFs{0xFE534D42, "smb2", true},
    KnownFs{0x0000517B, "smb", true},
    KnownFs{0x6B414653, "afs", true},  // kAFS
    KnownFs{0x5346414F, "openafs", true},
    KnownFs{0x7461636F, "ocfs2", true},  // cluster filesystems: other nodes
    KnownFs{0x01161970, "gfs2", true},   // write the same blocks
};

}  // namespace

FsKind fs_kind_of_magic(std::uint32_t magic) {
  for (const KnownFs& fs : kKnown) {
    if (fs.magic == magic) {
      return FsKind{magic, fs.name, fs.shared};
    }
  }
  return FsKind{magic, "unknown", false};
}

FsKind fs_kind_of(int fd, int& err) {
  struct statfs st {};
  if (::fstatfs(fd, &st) != 0) {
    err = errno;
    return {};
  }
  err = 0;
  // f_type is a signed long on most ABIs; every magic is 32 bits wide.
  return fs_kind_of_magic(static_cast<std::uint32_t>(st.f_type));
}

std::string describe(const FsKind& kind) {
  if (kind.name != "unknown") {
    return std::string(kind.name);
  }
  return fmt::format("unknown ({:#010x})", kind.magic);
}

}  // namespace pvc
