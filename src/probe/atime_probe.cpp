#include "probe/atime_probe.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include "common/clock.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"

namespace pvc {
namespace {

constexpr time_t kHour = 3600;

struct ProbeFile {
  std::string path;
  ~ProbeFile() {
    if (!path.empty()) {
      ::unlink(path.c_str());
    }
  }
};

bool set_times(const std::string& path, time_t atime, time_t mtime) {
  const std::array<timespec, 2> t = {timespec{atime, 0}, timespec{mtime, 0}};
  return ::utimensat(AT_FDCWD, path.c_str(), t.data(), 0) == 0;
}

// Reads the file through a fresh descriptor and returns its atime after.
bool read_and_stat(const std::string& path, time_t& atime, int& err) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    err = errno;
    return false;
  }
  char buf[64];
  if (::read(fd.get(), buf, sizeof buf) < 0) {
    err = errno;
    return false;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    err = errno;
    return false;
  }
  atime = st.st_atim.tv_sec;
  return true;
}

}  // namespace

const char* atime_behaviour_name(AtimeBehaviour b) {
  switch (b) {
    case AtimeBehaviour::kStrict:
      return "strictatime";
    case AtimeBehaviour::kRelative:
      return "relatime";
    case AtimeBehaviour::kNone:
      return "noatime";
    case AtimeBehaviour::kUnknown:
      return "unknown";
  }
  return "unknown";
}

AtimeProbe probe_atime(const std::string& dir) {
  AtimeProbe out;
  ProbeFile file;
  file.path = dir + "/.pvc-evictor-atime-probe-" + std::to_string(::getpid());
  {
    const UniqueFd fd(::open(file.path.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) {
      out.detail = sys_message("create", file.path, errno) +
                   " (atime behaviour needs a writable directory)";
      file.path.clear();
      return out;
    }
    const char data[] = "pvc-evictor atime probe\n";
    if (::write(fd.get(), data, sizeof data) < 0) {
      out.detail = sys_message("write", file.path, errno);
      return out;
    }
  }
  const time_t now = static_cast<time_t>(ns_to_seconds(SystemClock().now()));
  int err = 0;
  time_t atime = 0;

  // Step 1: atime newer than mtime and ctime. Setting times moves ctime to
  // now, and relatime also updates an atime older than ctime, so the only
  // atime it leaves alone is one ahead of the clock.
  const time_t recent = now + kHour;
  if (!set_times(file.path, recent, now - 2 * kHour) ||
      !read_and_stat(file.path, atime, err)) {
    out.detail = sys_message("probe read", file.path, err != 0 ? err : errno);
    return out;
  }
  if (atime != recent) {
    out.behaviour = AtimeBehaviour::kStrict;
    out.detail =
        "a read moved an atime that was newer than mtime and "
        "ctime: every read updates atime";
    return out;
  }
  // Step 2: atime older than mtime.
  const time_t stale = now - 3 * kHour;
  if (!set_times(file.path, stale, now - 2 * kHour) ||
      !read_and_stat(file.path, atime, err)) {
    out.detail = sys_message("probe read", file.path, err != 0 ? err : errno);
    return out;
  }
  if (atime != stale) {
    out.behaviour = AtimeBehaviour::kRelative;
    out.detail =
        "a read moved atime only when it was older than mtime or "
        "ctime: a file read all day can keep an atime up to 24 "
        "hours old";
  } else {
    out.behaviour = AtimeBehaviour::kNone;
    out.detail = "no read moved atime: atime says nothing about use";
  }
  return out;
}

}  // namespace pvc
