#include "watch/fanotify_group.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/fanotify.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "watch/fanotify_abi.hpp"

namespace pvc {
namespace {

// A notification-only group (never permission events, which would put the
// daemon in vLLM's read path), not inherited by children, read without
// blocking from the watcher's poll loop.
constexpr unsigned kInitFlags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK;
// Flags of the descriptors the kernel would open per event. FID groups open
// none, but the kernel still checks these.
constexpr unsigned kEventFileFlags = O_RDONLY | O_LARGEFILE | O_CLOEXEC;

// Uses of a file. FAN_OPEN is the one that always comes: mmap and GPUDirect
// reads produce no FAN_ACCESS, but they begin with an open.
constexpr std::uint64_t kUseEvents =
    FAN_OPEN | FAN_ACCESS | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
// Entries appearing and leaving. FAN_ONDIR extends every bit to
// directories, so bucket directories made and removed by the writer are
// seen too. FAN_DELETE_SELF and FAN_MOVE_SELF are not asked for: on a
// filesystem mark they would fire for every file deleted, repeating
// FAN_DELETE without the name the index is keyed by.
constexpr std::uint64_t kEntryEvents = FAN_CREATE | FAN_DELETE | FAN_ONDIR;
constexpr std::uint64_t kMoveEvents = FAN_MOVED_FROM | FAN_MOVED_TO;

struct LevelSpec {
  WatchLevel level;
  std::string_view name;
  unsigned report;
  std::uint64_t mask;
};

// Richest first. FAN_RENAME replaces FAN_MOVED_FROM/TO rather than joining
// them: one event with both ends instead of three per rename.
constexpr std::array kLevels = {
    LevelSpec{WatchLevel::kRenameTargetFid, "rename+target-fid",
              kFanReportDfidName | kFanReportFid | kFanReportTargetFid,
              kUseEvents | kEntryEvents | kFanRename},
    LevelSpec{WatchLevel::kDfidNameFid, "dfid-name+fid",
              kFanReportDfidName | kFanReportFid,
              kUseEvents | kEntryEvents | kMoveEvents},
    LevelSpec{WatchLevel::kDfidName, "dfid-name", kFanReportDfidName,
              kUseEvents | kEntryEvents | kMoveEvents},
};

// The queue limit is read by the kernel when a group is created. The sysctl
// appeared in 5.13; before that the limit was this fixed value, which is
// still the default.
constexpr const char* kQueueLimitPath =
    "/proc/sys/fs/fanotify/max_queued_events";
constexpr std::uint64_t kDefaultQueueEvents = 16384;

std::uint64_t read_queue_limit() {
  UniqueFd fd(::open(kQueueLimitPath, O_RDONLY | O_CLOEXEC));
  char text[32] = {};
  const ssize_t n = fd ? ::read(fd.get(), text, sizeof(text) - 1) : -1;
  std::uint64_t value = 0;
  if (n <= 0 || std::from_chars(text, text + n, value).ec != std::errc() ||
      value == 0) {
    return kDefaultQueueEvents;
  }
  return value;
}

// What an errno from fanotify_init() or fanotify_mark() most likely means
// for someone deploying the daemon.
std::string_view likely_reason(int err) {
  switch (err) {
    case EPERM:
      return "the daemon lacks CAP_SYS_ADMIN, which a filesystem mark "
             "needs, or seccomp, SELinux or AppArmor refused fanotify";
    case EINVAL:
      return "the kernel lacks the fanotify flags watch mode needs "
             "(file-handle events with names and filesystem marks)";
    case ENODEV:
      return "the filesystem has no filesystem id (f_fsid is zero, as on "
             "FUSE and on tmpfs of older kernels), so fanotify cannot report "
             "file handles on it";
    case EXDEV:
      return "the path is on a btrfs subvolume or another filesystem whose "
             "id differs from its superblock's, where fanotify refuses "
             "filesystem marks";
    case EOPNOTSUPP:
      return "the filesystem cannot encode file handles, which "
             "file-handle events require (e.g. some FUSE filesystems)";
    case ENOSYS:
      return "the kernel has no fanotify (CONFIG_FANOTIFY is off) or a "
             "seccomp profile hides it";
    case EMFILE:
      return "too many fanotify groups (fs.fanotify.max_user_groups) or "
             "open descriptors";
    case ENOMEM:
      return "the kernel could not allocate the group or its mark "
             "(fs.fanotify.max_user_marks may be exhausted)";
    case ENOENT:
    case ENOTDIR:
      return "the mount path does not exist";
    default:
      return "unexpected error";
  }
}

}  // namespace

std::string_view watch_level_name(WatchLevel level) {
  for (const LevelSpec& spec : kLevels) {
    if (spec.level == level) {
      return spec.name;
    }
  }
  return "?";
}

std::optional<WatchLevel> parse_watch_level(std::string_view name) {
  for (const LevelSpec& spec : kLevels) {
    if (spec.name == name) {
      return spec.level;
    }
  }
  return std::nullopt;
}

FanotifyGroup FanotifyGroup::open(std::string_view mount_path, int& err,
                                  std::string& detail, WatchLevel max_level) {
  const std::string path(mount_path);
  detail.clear();
  // EINVAL only says "not this level"; any other refusal is about the
  // machine or the filesystem and explains a failure better.
  int telling_err = 0;
  std::string refusals;
  std::string first_why;
  bool all_alike = true;
  for (const LevelSpec& spec : kLevels) {
    if (spec.level > max_level) {
      continue;
    }
    const char* call = "fanotify_init";
    UniqueFd fd(::fanotify_init(kInitFlags | spec.report, kEventFileFlags));
    int level_err = fd ? 0 : errno;
    if (fd && ::fanotify_mark(fd.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM,
                              spec.mask, AT_FDCWD, path.c_str()) != 0) {
      level_err = errno;
      call = "fanotify_mark";
    }
    if (level_err == 0) {
      FanotifyGroup group;
      group.fd_ = std::move(fd);
      group.level_ = spec.level;
      group.init_flags_ = kInitFlags | spec.report;
      group.mask_ = spec.mask;
      group.queue_events_ = read_queue_limit();
      group.path_ = path;
      struct statfs st {};
      if (::statfs(path.c_str(), &st) == 0) {
        group.fs_ = fs_kind_of_magic(static_cast<std::uint32_t>(st.f_type));
        std::memcpy(&group.fsid_, &st.f_fsid, sizeof(group.fsid_));
      }
      detail = refusals;
      err = 0;
      return group;
    }
    const std::string why =
        fmt::format("{}: {}", call, describe_errno(level_err));
    spdlog::debug("fanotify level {} refused on {}: {}", spec.name,
                  escape_bytes(path), why);
    refusals +=
        fmt::format("{}{}: {}", refusals.empty() ? "" : "; ", spec.name, why);
    if (first_why.empty()) {
      first_why = why;
    }
    all_alike = all_alike && why == first_why;
    if (telling_err == 0 && level_err != EINVAL) {
      telling_err = level_err;
    }
  }
  err = telling_err != 0 ? telling_err : EINVAL;
  detail = fmt::format(
      "{} ({})", likely_reason(err),
      all_alike ? "every level: " + first_why : "tried " + refusals);
  return {};
}

std::size_t FanotifyGroup::read(std::span<std::uint8_t> buffer,
                                int& err) const {
  for (;;) {
    const ssize_t n = ::read(fd_.get(), buffer.data(), buffer.size());
    if (n >= 0) {
      err = 0;
      return static_cast<std::size_t>(n);
    }
    if (errno != EINTR) {
      err = errno;
      return 0;
    }
  }
}

int FanotifyGroup::stop_directory_events() {
  if (::fanotify_mark(fd_.get(), FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM,
                      FAN_ONDIR, AT_FDCWD, path_.c_str()) != 0) {
    return errno;
  }
  mask_ &= ~static_cast<std::uint64_t>(FAN_ONDIR);
  return 0;
}

}  // namespace pvc
