#include "daemon/daemon.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "common/clock.hpp"
#include "common/escape.hpp"
#include "common/format.hpp"
#include "common/sys_error.hpp"
#include "config/parse.hpp"
#include "crawl/crawler.hpp"
#include "evict/deleter.hpp"
#include "evict/evictor.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"
#include "usage/usage.hpp"

namespace pvc {
namespace {

// How often a running crawl reports its progress.
constexpr double kCrawlProgressSeconds = 10.0;
// A rescan asked for by an episode waits at least this long after the last
// crawl ended, so an episode that cannot be satisfied does not turn into
// the continuous rescanning this design exists to avoid.
constexpr double kMinRescanGapSeconds = 10.0;

// Wakes the main loop early when a stop is requested.
class Waker {
 public:
  void wait(double seconds, const std::atomic<bool>& stop) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                 [&] { return stop.load(); });
  }
  void wake() {
    std::lock_guard lock(mutex_);
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
};

// Signals are blocked in every thread and taken here with sigwait, so no
// code runs in signal-handler context.
class SignalThread {
 public:
  SignalThread(std::atomic<bool>& stop, Waker& waker) {
    sigset_t set = signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    thread_ = std::jthread([&stop, &waker, set] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
          continue;
        }
        if (sig == SIGUSR2) {
          return;  // our own shutdown nudge
        }
        spdlog::info("received {}, stopping after the current batch",
                     sig == SIGTERM ? "SIGTERM" : "SIGINT");
        stop = true;
        waker.wake();
      }
    });
  }
  ~SignalThread() { pthread_kill(thread_.native_handle(), SIGUSR2); }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

 private:
  static sigset_t signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR2);
    return set;
  }
  std::jthread thread_;
};

bool wait_for_mount(const Settings& s, const std::atomic<bool>& stop,
                    Waker& waker) {
  const double deadline = monotonic_seconds() + s.mount_wait_seconds;
  bool said = false;
  for (;;) {
    struct stat st {};
    if (::stat(s.mount_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return true;
    }
    const int err = errno;
    if (monotonic_seconds() >= deadline || stop) {
      spdlog::error("mount path {} is not available after {:.0f}s: {}",
                    escape_bytes(s.mount_path), s.mount_wait_seconds,
                    describe_errno(err));
      return false;
    }
    if (!said) {
      spdlog::warn("waiting up to {:.0f}s for mount path {} ({})",
                   s.mount_wait_seconds, escape_bytes(s.mount_path),
                   describe_errno(err));
      said = true;
    }
    waker.wait(0.5, stop);
  }
}

EvictorConfig evictor_config(const Settings& s) {
  EvictorConfig c;
  c.thresholds.cleanup = s.cleanup_threshold / 100;
  c.thresholds.target = s.target_threshold / 100;
  c.thresholds.inode_cleanup = s.inode_cleanup_threshold / 100;
  c.thresholds.inode_target = s.inode_target_threshold / 100;
  c.thresholds.emergency = s.emergency_threshold / 100;
  c.hot_window = seconds_to_ns(s.hot_minutes * 60);
  c.batch_size = s.batch_size;
  c.dir_cleanup = s.dir_cleanup;
  c.dir_grace = seconds_to_ns(s.dir_cleanup_ttl_seconds);
  c.temp_max_age = seconds_to_ns(s.temp_max_age_minutes * 60);
  c.usage_log_interval = seconds_to_ns(s.usage_log_interval_seconds);
  return c;
}

// Runs crawls on a thread of their own, one at a time.
class CrawlRunner {
 public:
  CrawlRunner(Crawler& crawler, Waker& waker)
      : crawler_(crawler), waker_(waker) {}

  bool running() const { return thread_.joinable() && !done_; }
  bool idle() const { return !thread_.joinable(); }

  void start(const CacheRoot& root) {
    done_ = false;
    started_ = monotonic_seconds();
    thread_ = std::jthread([this, &root] {
      stats_ = crawler_.run(root);
      done_ = true;
      waker_.wake();
    });
  }

  // The stats of a crawl that has ended, once.
  std::optional<CrawlStats> take_finished() {
    if (!thread_.joinable() || !done_) {
      return std::nullopt;
    }
    thread_.join();
    ended_ = monotonic_seconds();
    return stats_;
  }

  double started() const { return started_; }
  double ended() const { return ended_; }

 private:
  Crawler& crawler_;
  Waker& waker_;
  std::jthread thread_;
  std::atomic<bool> done_{false};
  CrawlStats stats_;
  double started_ = -1e18;
  double ended_ = -1e18;
};

void log_crawl(const CrawlStats& s, std::size_t indexed, std::uint64_t bytes) {
  const double rate =
      s.seconds > 0 ? static_cast<double>(s.files) / s.seconds : 0.0;
  spdlog::info(
      "crawl {}: {} files in {} directories in {:.2f}s ({:.0f} files/s); "
      "index holds {} files, {}",
      s.complete ? "done" : "stopped", s.files, s.dirs, s.seconds, rate,
      indexed, format_bytes(bytes));
  if (s.links + s.foreign + s.errors + s.too_deep != 0) {
    spdlog::warn(
        "crawl skipped {} links, {} directories on other mounts, {} "
        "directories below depth 64 and {} entries it could not read "
        "(run with --log-level debug for paths)",
        s.links, s.foreign, s.too_deep, s.errors);
  }
}

}  // namespace

int run_daemon(const Settings& settings) {
  std::atomic<bool> stop{false};
  Waker waker;
  SignalThread signals(stop, waker);

  spdlog::info("pvc-evictor {} starting: {}", PVC_EVICTOR_VERSION,
               describe(settings));
  if (settings.mode == Mode::kWatch) {
    spdlog::error(
        "--mode watch is not available in this build: fanotify watching is "
        "not implemented yet; use --mode crawl or --mode auto");
    return 1;
  }
  spdlog::info(
      "mode: crawl ({}); hot files are those whose atime or mtime "
      "is within {} minutes",
      settings.mode == Mode::kAuto
          ? "auto: watch mode is not available in this build"
          : "as configured",
      settings.hot_minutes);
  if (settings.dry_run) {
    spdlog::warn("dry run: nothing will be deleted");
  }
  if (!wait_for_mount(settings, stop, waker)) {
    return stop ? 0 : 1;
  }

  SystemClock clock;
  SharedIndex index;
  UsageMonitor usage(settings.mount_path, settings.max_cache_bytes, [&] {
    return index.with([](Index& i) { return i.total_bytes(); });
  });
  const std::string root_path = settings.cache_root();
  CacheRoot root;
  Deleter deleter(root, settings.dry_run ? DryRun::kYes : DryRun::kNo);
  Evictor evictor(evictor_config(settings), index, usage, deleter, clock, stop);
  CrawlOptions crawl_options;
  crawl_options.crawlers = settings.crawlers;
  crawl_options.bucket_width = settings.hex_bucket_len;
  Crawler crawler(index, clock, crawl_options, stop);
  CrawlRunner crawls(crawler, waker);
  int root_error = 0;
  double last_progress_log = 0;

  while (!stop) {
    evictor.step();

    // Collect a finished crawl.
    if (auto done = crawls.take_finished()) {
      const auto [files, bytes] = index.with([](Index& i) {
        return std::pair{i.file_count(), i.total_bytes()};
      });
      log_crawl(*done, files, bytes);
      evictor.crawl_finished(done->complete);
    }

    // Start the next crawl when one is due.
    const double now = monotonic_seconds();
    const bool due =
        now - crawls.started() >= settings.rescan_interval_seconds ||
        (evictor.take_rescan_request() &&
         now - crawls.ended() >= kMinRescanGapSeconds);
    if (crawls.idle() && due) {
      if (!root.valid() || root.stale()) {
        int err = 0;
        root = CacheRoot::open(root_path, err);
        deleter.forget_anchor();
        if (err != root_error) {
          if (err != 0) {
            spdlog::warn("cache directory: {}; retrying every {:.0f}s",
                         sys_message("open", root_path, err),
                         settings.rescan_interval_seconds);
          } else if (root_error != 0) {
            spdlog::info("cache directory {} is available",
                         escape_bytes(root_path));
          }
          root_error = err;
        }
      }
      if (root.valid()) {
        crawls.start(root);
        last_progress_log = now;
      }
    } else if (crawls.running() &&
               now - last_progress_log >= kCrawlProgressSeconds) {
      last_progress_log = now;
      const CrawlProgress& p = crawler.progress();
      const double elapsed = now - crawls.started();
      spdlog::info(
          "crawl in progress: {} files, {} directories, {:.0f}s, "
          "{:.0f} files/s",
          p.files.load(), p.dirs.load(), elapsed,
          static_cast<double>(p.files.load()) / elapsed);
    }

    waker.wait(settings.interval_seconds, stop);
  }

  spdlog::info("stopped");
  return 0;
}

}  // namespace pvc
