#include "watch/self_check.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include <vector>

#include "common/clock.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"
#include "watch/event_decoder.hpp"
#include "watch/handle_key.hpp"

namespace pvc {
namespace {

constexpr double kSelfCheckSeconds = 1.0;

}  // namespace

bool watch_self_check(const FanotifyGroup& group, const std::string& dir,
                      std::string& why) {
  int err = 0;
  {
    const UniqueFd probe(
        ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!probe) {
      why = sys_message("open", dir, errno);
      return false;
    }
  }
  const int pid = static_cast<int>(::getpid());
  std::vector<std::uint8_t> buffer(FanotifyGroup::kReadBufferBytes);
  std::vector<DecodedEvent> events;
  DecodeStats stats;
  const double deadline = monotonic_seconds() + kSelfCheckSeconds;
  std::size_t seen = 0;
  for (;;) {
    const double left = deadline - monotonic_seconds();
    if (left <= 0) {
      break;
    }
    pollfd pfd{group.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left * 1000) + 1) <= 0) {
      continue;
    }
    const std::size_t n = group.read(buffer, err);
    if (n == 0) {
      continue;
    }
    decode_events(std::span<const std::uint8_t>(buffer.data(), n), events,
                  stats);
    for (const DecodedEvent& e : events) {
      ++seen;
      if (e.pid == pid && (e.mask & FAN_ONDIR) != 0 &&
          (e.mask & (FAN_OPEN | FAN_CLOSE_NOWRITE)) != 0) {
        // Drain what else is queued; the watcher starts from empty.
        while (group.read(buffer, err) != 0) {
        }
        return true;
      }
    }
  }
  why = seen == 0 ? "no event arrived within 1 s of opening " + dir
                  : "events arrived, but not the open of " + dir;
  return false;
}

}  // namespace pvc
