#include "crawl/crawler.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "crawl/partition.hpp"
#include "layout/names.hpp"

namespace pvc {
namespace {

// Large enough that a leaf bucket (a handful of entries) is read in one
// call and a wide first-level directory in a few.
constexpr std::size_t kDentsBufferBytes = 64 * 1024;

// Deeper than any layout the writer has used; bounds the descriptors one
// walker holds open and stops a hostile tree from exhausting them.
constexpr unsigned kMaxDepth = 64;

struct RawDirent {
  ino64_t d_ino;
  off64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[1];
};

TimeNs to_ns(const timespec& ts) {
  return ts.tv_sec * kNsPerSecond + ts.tv_nsec;
}

struct Task {
  DirId dir;
  std::string rel;
  unsigned depth;
};

// Hands buckets from the spine to one crawler.
class TaskQueue {
 public:
  void push(Task task) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }
  bool pop(Task& task) {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [this] { return closed_ || !tasks_.empty(); });
    if (tasks_.empty()) {
      return false;
    }
    task = std::move(tasks_.front());
    tasks_.pop_front();
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Task> tasks_;
  bool closed_ = false;
};

struct FoundFile {
  std::string name;
  FileKind kind;
  FileObservation seen;
};

// One thread's walk. The spine walker dispatches buckets; crawlers do not.
class Walker {
 public:
  Walker(SharedIndex& index, const Clock& clock, const CacheRoot& root,
         const CrawlOptions& options, const std::atomic<bool>& stop,
         CrawlProgress& progress, std::vector<TaskQueue>* dispatch)
      : index_(index),
        clock_(clock),
        root_(root),
        options_(options),
        stop_(stop),
        progress_(progress),
        dispatch_(dispatch),
        buffer_(kDentsBufferBytes) {}

  void walk(int fd, DirId dir, const std::string& rel, unsigned depth) {
    if (stop_.load(std::memory_order_relaxed)) {
      stopped_ = true;
      return;
    }
    subdirs_.clear();
    files_.clear();
    if (options_.on_dir) {
      options_.on_dir(fd, dir);
    }
    if (!read_dir(fd, rel)) {
      return;
    }
    ++stats_.dirs;
    progress_.dirs.fetch_add(1, std::memory_order_relaxed);
    progress_.files.fetch_add(files_.size(), std::memory_order_relaxed);
    stats_.files += files_.size();

    // Record this directory's files and intern its subdirectories in one
    // lock hold; most leaf directories hold one or two files.
    std::vector<std::pair<std::string, DirId>> children;
    children.reserve(subdirs_.size());
    const TimeNs now = clock_.now();
    index_.with([&](Index& index) {
      for (const FoundFile& f : files_) {
        index.observe(dir, f.name, f.kind, f.seen, options_.policy, now);
      }
      for (std::string& name : subdirs_) {
        const DirId child = index.add_dir(dir, name);
        children.emplace_back(std::move(name), child);
      }
    });

    for (const auto& [name, child] : children) {
      std::string child_rel = rel.empty() ? name : rel + "/" + name;
      if (dispatch_ != nullptr) {
        if (auto value = bucket_value(name, options_.bucket_width)) {
          ++stats_.buckets;
          (*dispatch_)[crawler_for_bucket(*value, options_.crawlers)].push(
              Task{child, std::move(child_rel), depth + 1});
          continue;
        }
      }
      descend(fd, name, child, child_rel, depth + 1);
    }
  }

  // Walks a bucket handed over by the spine.
  void walk_task(const Task& task) {
    int err = 0;
    UniqueFd fd = root_.open_dir(task.rel, true, err);
    if (!fd) {
      note_open_failure(task.rel, err);
      return;
    }
    walk(fd.get(), task.dir, task.rel, task.depth);
  }

  const CrawlStats& stats() const { return stats_; }
  bool stopped() const { return stopped_; }

 private:
  void descend(int parent_fd, const std::string& name, DirId dir,
               const std::string& rel, unsigned depth) {
    if (depth > kMaxDepth) {
      ++stats_.too_deep;
      return;
    }
    int err = 0;
    UniqueFd fd = root_.open_child_dir(parent_fd, name.c_str(), err);
    if (!fd) {
      note_open_failure(rel, err);
      return;
    }
    walk(fd.get(), dir, rel, depth);
  }

  void note_open_failure(const std::string& rel, int err) {
    if (err == ENOENT) {
      ++stats_.vanished;
    } else if (err == EXDEV) {
      ++stats_.foreign;
      spdlog::debug("crawl: not crossing into another mount at {}",
                    escape_bytes(rel));
    } else if (err == ELOOP || err == ENOTDIR) {
      ++stats_.links;  // replaced by a link or a file since it was listed
    } else {
      ++stats_.errors;
      spdlog::debug("crawl: {}", sys_message("open", rel, err));
    }
  }

  bool read_dir(int fd, const std::string& rel) {
    for (;;) {
      const long n =
          ::syscall(SYS_getdents64, fd, buffer_.data(), buffer_.size());
      if (n == 0) {
        return true;
      }
      if (n < 0) {
        const int err = errno;
        if (err == ENOENT) {
          ++stats_.vanished;
        } else {
          ++stats_.errors;
          spdlog::debug("crawl: {}", sys_message("getdents64", rel, err));
        }
        return false;
      }
      for (long off = 0; off < n;) {
        const auto* d = reinterpret_cast<const RawDirent*>(&buffer_[off]);
        off += d->d_reclen;
        on_entry(fd, d->d_name, d->d_type, rel);
      }
    }
  }

  void on_entry(int fd, const char* raw_name, unsigned char type,
                const std::string& rel) {
    const std::string_view name(raw_name);
    if (name == "." || name == "..") {
      return;
    }
    if (type == DT_DIR) {
      subdirs_.emplace_back(name);
      return;
    }
    if (type == DT_LNK) {
      ++stats_.links;
      return;
    }
    if (type != DT_REG && type != DT_UNKNOWN) {
      return;  // devices, sockets, fifos: never the writer's
    }
    const FileKind kind = classify_file(name);
    if (kind == FileKind::kOther && type == DT_REG) {
      return;
    }
    struct stat st {};
    if (::fstatat(fd, raw_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      const int err = errno;
      if (err == ENOENT) {
        ++stats_.vanished;
      } else {
        ++stats_.errors;
        spdlog::debug("crawl: {}",
                      sys_message("fstatat", rel + "/" + raw_name, err));
      }
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      subdirs_.emplace_back(name);
    } else if (S_ISLNK(st.st_mode)) {
      ++stats_.links;
    } else if (S_ISREG(st.st_mode) && kind != FileKind::kOther &&
               st.st_dev == root_.dev()) {
      FileObservation seen;
      seen.ino = st.st_ino;
      seen.bytes = static_cast<std::uint64_t>(st.st_blocks) * 512U;
      seen.atime = to_ns(st.st_atim);
      seen.mtime = to_ns(st.st_mtim);
      files_.push_back(FoundFile{std::string(name), kind, seen});
    }
  }

  SharedIndex& index_;
  const Clock& clock_;
  const CacheRoot& root_;
  const CrawlOptions& options_;
  const std::atomic<bool>& stop_;
  CrawlProgress& progress_;
  std::vector<TaskQueue>* dispatch_;
  std::vector<char> buffer_;
  std::vector<std::string> subdirs_;
  std::vector<FoundFile> files_;
  CrawlStats stats_;
  bool stopped_ = false;
};

void add(CrawlStats& total, const CrawlStats& part) {
  total.files += part.files;
  total.dirs += part.dirs;
  total.buckets += part.buckets;
  total.links += part.links;
  total.foreign += part.foreign;
  total.vanished += part.vanished;
  total.errors += part.errors;
  total.too_deep += part.too_deep;
}

}  // namespace

Crawler::Crawler(SharedIndex& index, const Clock& clock, CrawlOptions options,
                 const std::atomic<bool>& stop)
    : index_(index), clock_(clock), options_(options), stop_(stop) {}

CrawlStats Crawler::run(const CacheRoot& root) {
  const double start = monotonic_seconds();
  progress_.files = 0;
  progress_.dirs = 0;
  progress_.running = true;
  index_.with([](Index& index) { index.begin_crawl(); });

  std::vector<TaskQueue> queues(options_.crawlers);
  std::vector<Walker> walkers;
  walkers.reserve(options_.crawlers);
  for (unsigned i = 0; i < options_.crawlers; ++i) {
    walkers.emplace_back(index_, clock_, root, options_, stop_, progress_,
                         nullptr);
  }
  std::vector<std::jthread> threads;
  threads.reserve(options_.crawlers);
  for (unsigned i = 0; i < options_.crawlers; ++i) {
    threads.emplace_back([&queues, &walkers, i] {
      Task task;
      while (queues[i].pop(task)) {
        walkers[i].walk_task(task);
      }
    });
  }

  Walker spine(index_, clock_, root, options_, stop_, progress_, &queues);
  int err = 0;
  UniqueFd top = root.open_dir("", true, err);
  if (top) {
    spine.walk(top.get(), index_.with([](Index& i) { return i.root(); }), "",
               0);
  } else {
    spdlog::warn("crawl: {}", sys_message("open", root.path(), err));
  }
  for (TaskQueue& q : queues) {
    q.close();
  }
  threads.clear();  // joins

  CrawlStats stats = spine.stats();
  bool stopped = spine.stopped() || !top;
  for (const Walker& w : walkers) {
    add(stats, w.stats());
    stopped = stopped || w.stopped();
  }
  stats.complete = !stopped && !stop_.load();
  index_.with([&](Index& index) { index.end_crawl(stats.complete); });
  stats.seconds = monotonic_seconds() - start;
  progress_.running = false;
  return stats;
}

}  // namespace pvc
