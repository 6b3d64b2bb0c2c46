#include "watch/watcher.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <climits>
#include <cstdio>
#include <cstring>
#include <span>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "layout/names.hpp"

namespace pvc {
namespace {

constexpr std::uint64_t kUseBits =
    FAN_OPEN | FAN_ACCESS | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
constexpr std::uint64_t kCloseBits = FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
constexpr std::uint64_t kArriveBits = FAN_CREATE | FAN_MOVED_TO;
constexpr std::uint64_t kLeaveBits = FAN_DELETE | FAN_MOVED_FROM;
constexpr std::uint64_t kEntryBits = kArriveBits | kLeaveBits;

// The thread wakes at least this often, which is what health watches.
constexpr int kPollTimeoutMs = 1000;
// Buffers drained before looking at the stop flag again; at ~600 events a
// buffer this is ~40,000 events, a few milliseconds of work.
constexpr int kBuffersPerWake = 64;
// Events kept while the first crawl runs. Beyond this the crawl's atime
// merge is what protects files used during it.
constexpr std::size_t kMaxKept = 100'000;

// The path the kernel reports for an open descriptor; false for a
// directory that has been deleted.
bool fd_path(int fd, std::string& out) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char buf[PATH_MAX];
  const ssize_t n = ::readlink(link, buf, sizeof buf - 1);
  if (n <= 0) {
    return false;
  }
  out.assign(buf, static_cast<std::size_t>(n));
  return !out.ends_with(" (deleted)");
}

TimeNs to_ns(const timespec& ts) {
  return ts.tv_sec * kNsPerSecond + ts.tv_nsec;
}

}  // namespace

Watcher::Watcher(FanotifyGroup& group, SharedIndex& index, DirHandles& handles,
                 const Clock& clock)
    : group_(group),
      index_(index),
      handles_(handles),
      clock_(clock),
      own_pid_(static_cast<int>(::getpid())),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      buffer_(FanotifyGroup::kReadBufferBytes) {}

Watcher::~Watcher() {
  stop();
}

void Watcher::start() {
  last_wake_ = monotonic_seconds();
  thread_ = std::jthread([this] { run(); });
}

void Watcher::wake() {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

void Watcher::stop() {
  if (!thread_.joinable()) {
    return;
  }
  stopping_ = true;
  wake();
  thread_.join();
}

void Watcher::initial_crawl_done() {
  replay_requested_ = true;
  wake();
}

void Watcher::run() {
  pollfd fds[2] = {{group_.fd(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
  while (!stopping_) {
    last_wake_ = monotonic_seconds();
    if (on_wake_) {
      on_wake_();
    }
    const int n = ::poll(fds, 2, kPollTimeoutMs);
    if (stopping_) {
      break;
    }
    if (n < 0) {
      if (errno != EINTR) {
        spdlog::warn("watch: {}", sys_message("poll", "fanotify", errno));
      }
      continue;
    }
    if ((fds[1].revents & POLLIN) != 0) {
      std::uint64_t count = 0;
      [[maybe_unused]] const auto r =
          ::read(wake_fd_.get(), &count, sizeof count);
    }
    if (reopen_root_.exchange(false)) {
      RootLocation where;
      {
        std::lock_guard lock(root_mutex_);
        where = root_where_;
      }
      int err = 0;
      root_ = CacheRoot::open(where, err);
      outside_.clear();
    }
    if (replay_requested_.exchange(false)) {
      replay_kept();
    }
    if ((fds[0].revents & POLLIN) != 0) {
      drain();
    }
  }
}

void Watcher::drain() {
  for (int i = 0; i < kBuffersPerWake && !stopping_; ++i) {
    int err = 0;
    const std::size_t size = group_.read(buffer_, err);
    if (size == 0) {
      if (err != EAGAIN && err != 0) {
        spdlog::warn("watch: {}", sys_message("read", "fanotify", err));
      }
      return;
    }
    DecodeStats stats;
    decode_events(std::span<const std::uint8_t>(buffer_.data(), size), decoded_,
                  stats);
    counters_.events += stats.events;
    if (stats.malformed != 0) {
      counters_.malformed += stats.malformed;
      // Events whose records could not be read are events lost.
      overflow_ = true;
    }
    resolve_unknown_dirs(decoded_);
    apply(decoded_);
    resolve_lookups();
  }
}

void Watcher::resolve_unknown_dirs(const std::vector<DecodedEvent>& events) {
  // A directory the crawl has not recorded (created since, or during the
  // first crawl) is found from its handle: open_by_handle_at relative to
  // the root's filesystem, then its path, which must lie beneath the root.
  const CacheRoot* root = &root_;
  if (!lazy_dirs_ || !root->valid()) {
    return;
  }
  for (const DecodedEvent& e : events) {
    if (e.overflow || e.pid == own_pid_) {
      continue;
    }
    for (const HandleKey* key : {&e.dir, &e.new_dir}) {
      if (key->valid() && !handles_.find(*key) &&
          outside_.find(*key) == outside_.end()) {
        resolve_dir(*root, *key);
      }
    }
  }
}

void Watcher::resolve_dir(const CacheRoot& root, const HandleKey& key) {
  if (key.hashed()) {
    return;  // only a hash of a long handle is kept; it cannot be opened
  }
  // struct file_handle ends in a flexible array; give it room.
  alignas(file_handle)
      std::array<std::uint8_t, sizeof(file_handle) + HandleKey::kInlineBytes>
          storage{};
  auto* fh = reinterpret_cast<file_handle*>(storage.data());
  fh->handle_bytes = key.size;
  fh->handle_type = key.type;
  std::memcpy(storage.data() + sizeof(file_handle), key.bytes.data(), key.size);
  const UniqueFd fd(
      ::open_by_handle_at(root.fd(), fh, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == EPERM) {
      lazy_dirs_ = false;
      spdlog::warn(
          "watch: {}; events in directories created after a crawl "
          "are ignored until the next crawl",
          sys_message("open_by_handle_at", root.path(), err));
    } else {
      remember_outside(key);  // gone (ESTALE) or not a directory
    }
    return;
  }
  std::string root_path;
  std::string path;
  if (!fd_path(root.fd(), root_path) || !fd_path(fd.get(), path)) {
    return;
  }
  std::string rel;
  if (path == root_path) {
    rel.clear();
  } else if (path.starts_with(root_path + "/")) {
    rel = path.substr(root_path.size() + 1);
  } else {
    remember_outside(key);  // elsewhere on the same filesystem
    return;
  }
  const DirId dir = index_.with([&](Index& index) {
    DirId at = index.root();
    for (std::size_t b = 0; b < rel.size();) {
      std::size_t e = rel.find('/', b);
      e = e == std::string::npos ? rel.size() : e;
      at = index.add_dir(at, std::string_view(rel).substr(b, e - b));
      b = e + 1;
    }
    return at;
  });
  handles_.put(key, dir);
}

void Watcher::remember_outside(const HandleKey& key) {
  // Bounded: a filesystem shared with other data can name many
  // directories outside the cache.
  constexpr std::size_t kMaxOutside = 100'000;
  if (outside_.size() >= kMaxOutside) {
    outside_.clear();
  }
  outside_.insert(key);
}

void Watcher::apply(const std::vector<DecodedEvent>& events) {
  const TimeNs now = clock_.now();
  index_.with([&](Index& index) {
    for (const DecodedEvent& e : events) {
      if (e.overflow) {
        ++counters_.overflows;
        overflow_ = true;
        if (!overflow_logged_) {
          overflow_logged_ = true;
          spdlog::warn(
              "watch: the kernel's event queue overflowed ({} events) and "
              "events were lost; rescanning, and until the rescan ends no "
              "file is judged cold for want of an event (later overflows "
              "are counted in metrics)",
              group_.queue_events());
        }
        continue;
      }
      if (e.pid == own_pid_) {
        ++counters_.own;
        continue;
      }
      const auto dir = handles_.find(e.dir);
      if (!dir || !index.dir_live(*dir)) {
        ++counters_.unresolved;
        if (keeping_) {
          keep_unresolved(e, now);
        }
        continue;
      }
      apply_one(index, e, *dir, now);
    }
  });
}

void Watcher::apply_one(Index& index, const DecodedEvent& e, DirId dir,
                        TimeNs now) {
  const std::uint64_t mask = e.mask;
  if ((mask & FAN_ONDIR) != 0) {
    // Directory entries: arrivals were registered before this pass.
    if ((mask & (kLeaveBits | FAN_RENAME)) != 0 && !e.name.empty()) {
      if (auto child = index.find_dir(dir, e.name)) {
        if (!index.remove_dir(*child)) {
          // A directory left with its contents: rescan to learn where.
          overflow_ = true;
        }
        ++counters_.applied;
      }
    }
    if ((mask & FAN_RENAME) != 0) {
      overflow_ = true;  // a directory moved within the tree
    }
    return;
  }
  if (e.name.empty() || e.name == ".") {
    return;
  }

  if ((mask & FAN_RENAME) != 0) {
    // One event for both ends: the usual temp file becoming a block.
    if (auto id = index.find_file(dir, e.name)) {
      index.remove_file(*id);
    }
    if (auto to = handles_.find(e.new_dir);
        to && index.dir_live(*to) &&
        classify_file(e.new_name) != FileKind::kOther) {
      lookups_.push_back({*to, std::string(e.new_name), false, false, now});
    }
    ++counters_.applied;
    return;
  }

  if (classify_file(e.name) == FileKind::kOther) {
    return;
  }
  const std::uint64_t entry = mask & kEntryBits;
  const auto id = index.find_file(dir, e.name);
  // Several entry events merged into one (created and deleted before the
  // queue was read, say) have lost their order: look at the disk.
  if (std::popcount(entry) > 1 || (entry & kArriveBits) != 0 ||
      (!id && (mask & kUseBits) != 0)) {
    lookups_.push_back(
        {dir, std::string(e.name), false, (mask & kUseBits) != 0, now});
    ++counters_.applied;
    return;
  }
  if ((entry & kLeaveBits) != 0) {
    if (id) {
      index.remove_file(*id);
      ++counters_.applied;
    }
    return;
  }
  if (!id) {
    return;
  }
  if ((mask & FAN_OPEN) != 0) {
    index.open_file(*id, now);
  }
  if ((mask & kCloseBits) != 0) {
    index.close_file(*id, now);
  }
  if ((mask & (FAN_OPEN | kCloseBits)) == 0) {
    index.touch(*id, now);
  }
  ++counters_.applied;
}

void Watcher::resolve_lookups() {
  const CacheRoot* root = &root_;
  if (lookups_.empty() || !root->valid()) {
    lookups_.clear();
    return;
  }
  std::string anchor_path;
  UniqueFd anchor;
  for (const Lookup& l : lookups_) {
    std::string path;
    const bool live = index_.with([&](Index& index) {
      if (!index.dir_live(l.dir)) {
        return false;
      }
      path = index.dir_path(l.dir);
      return true;
    });
    if (!live) {
      continue;
    }
    int err = 0;
    if (!anchor || path != anchor_path) {
      anchor = root->open_dir(path, false, err);
      anchor_path = path;
      if (!anchor) {
        continue;
      }
    }
    if (l.is_dir) {
      UniqueFd child(::openat(anchor.get(), l.name.c_str(),
                              O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child || !root->same_mount(child.get(), err)) {
        continue;
      }
      const HandleKey key = handle_of_dir(child.get(), group_.fsid(), err);
      if (!key.valid()) {
        continue;
      }
      const DirId id = index_.with(
          [&](Index& index) { return index.add_dir(l.dir, l.name); });
      handles_.put(key, id);
      continue;
    }
    struct stat st {};
    const bool exists =
        ::fstatat(anchor.get(), l.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    const int stat_err = exists ? 0 : errno;
    index_.with([&](Index& index) {
      if (!index.dir_live(l.dir)) {
        return;
      }
      if (!exists || !S_ISREG(st.st_mode) || st.st_dev != root->dev()) {
        if (stat_err == ENOENT || exists) {
          if (auto id = index.find_file(l.dir, l.name)) {
            index.remove_file(*id);
          }
        }
        return;
      }
      FileObservation seen;
      seen.ino = st.st_ino;
      seen.bytes = static_cast<std::uint64_t>(st.st_blocks) * 512U;
      seen.atime = to_ns(st.st_atim);
      seen.mtime = to_ns(st.st_mtim);
      const FileId id =
          index.observe(l.dir, l.name, classify_file(l.name), seen,
                        MergePolicy::kLaterOfBoth, clock_.now());
      if (l.used) {
        index.touch(id, l.when);
      }
    });
  }
  lookups_.clear();
}

void Watcher::keep_unresolved(const DecodedEvent& e, TimeNs now) {
  if (e.name.empty() || kept_.size() >= kMaxKept) {
    return;
  }
  kept_.push_back({e.dir, std::string(e.name), e.mask, now});
}

void Watcher::replay_kept() {
  std::vector<Kept> kept;
  kept.swap(kept_);
  keeping_ = false;
  std::size_t resolved = 0;
  index_.with([&](Index& index) {
    for (const Kept& k : kept) {
      const auto dir = handles_.find(k.dir);
      if (!dir || !index.dir_live(*dir)) {
        continue;
      }
      DecodedEvent e;
      e.mask = k.mask;
      e.dir = k.dir;
      e.name = k.name;
      apply_one(index, e, *dir, k.when);
      ++resolved;
    }
  });
  resolve_lookups();
  spdlog::info(
      "watch: replayed {} of {} events that arrived during the "
      "first crawl",
      resolved, kept.size());
}

}  // namespace pvc
