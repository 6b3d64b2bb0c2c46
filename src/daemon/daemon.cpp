#include "daemon/daemon.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/clock.hpp"
#include "common/escape.hpp"
#include "common/format.hpp"
#include "common/sys_error.hpp"
#include "config/parse.hpp"
#include "crawl/crawler.hpp"
#include "daemon/privileges.hpp"
#include "events/publisher.hpp"
#include "evict/deleter.hpp"
#include "evict/evictor.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"
#include "metrics/heartbeats.hpp"
#include "metrics/http_server.hpp"
#include "metrics/render.hpp"
#include "metrics/status.hpp"
#include "probe/probe.hpp"
#include "usage/usage.hpp"
#include "watch/dir_handles.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/handle_key.hpp"
#include "watch/self_check.hpp"
#include "watch/watcher.hpp"

namespace pvc {
namespace {

// The cache root as CacheRoot opens it: the cache directory beneath the
// mount path, reached without links.
RootLocation root_location(const Settings& s) {
  return {s.mount_path, s.cache_dir};
}

// How often a running crawl reports its progress.
constexpr double kCrawlProgressSeconds = 10.0;
// A rescan asked for by an episode waits at least this long after the last
// crawl ended, so an episode that cannot be satisfied does not turn into
// the continuous rescanning this design exists to avoid.
constexpr double kMinRescanGapSeconds = 10.0;
// Health deadlines. The main loop beats every poll and between batches;
// a crawl beats per directory, and one directory on a slow network volume
// can take seconds, so its deadline is generous.
constexpr double kMainLoopDeadlineFloor = 30.0;
constexpr double kCrawlDeadline = 120.0;
// The watcher wakes at least once a second; missing this many is a stall.
constexpr double kWatcherDeadline = 30.0;
// With events keeping the index current, a full crawl is only a safety net
// in watch mode, so it runs this many times less often.
constexpr double kWatchRescanFactor = 12.0;
// Rescans after lost events that themselves lose events, before deletion
// stops waiting for a clean one.
constexpr unsigned kMaxHeldRescans = 3;
// The SIGUSR1 dump is bounded like the HTTP pages.
constexpr std::size_t kSignalDumpFiles = 10000;
// Set to a loop name ("evictor", "crawler") to make its heartbeats be
// ignored, so tests can see health turn to 503. Not a user setting.
constexpr const char* kTestStallEnv = "PVC_EVICTOR_TEST_STALL_LOOP";
// Overrides every loop's health deadline (seconds), so tests need not wait
// half a minute to see a stall. Not a user setting.
constexpr const char* kTestDeadlineEnv =
    "PVC_EVICTOR_TEST_LOOP_DEADLINE_SECONDS";

std::optional<double> test_deadline() {
  const char* text = std::getenv(kTestDeadlineEnv);
  if (text == nullptr) {
    return std::nullopt;
  }
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v > 0)) {
    return std::nullopt;
  }
  return v;
}

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
  SignalThread(std::atomic<bool>& stop, Waker& waker,
               std::function<void()> on_dump) {
    sigset_t set = signals();
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    thread_ = std::jthread([&stop, &waker, set, on_dump] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) {
          continue;
        }
        if (sig == SIGUSR2) {
          return;  // our own shutdown nudge
        }
        if (sig == SIGUSR1) {
          on_dump();
          continue;
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
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    return set;
  }
  std::jthread thread_;
};

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

// Everything the daemon runs, and the status source for its endpoints.
// What start-up decided about watch mode, handed to the daemon.
struct WatchSetup {
  FanotifyGroup group;  // invalid in crawl mode
  std::string reason;   // why this mode, for logs and metrics
};

class Daemon final : public StatusSource {
 public:
  Daemon(const Settings& s, WatchSetup watch)
      : settings_(s),
        group_(std::move(watch.group)),
        mode_reason_(std::move(watch.reason)),
        signals_(stop_, waker_, [this] { write_dump(); }),
        usage_(s.mount_path, s.max_cache_bytes,
               [this] {
                 return index_.with([](Index& i) { return i.total_bytes(); });
               }),
        deleter_(root_, s.dry_run ? DryRun::kYes : DryRun::kNo),
        evictor_(evictor_config(s), index_, usage_, deleter_, clock_, stop_),
        crawler_(index_, clock_, crawl_options(s, group_.valid()), stop_),
        crawls_(crawler_, waker_),
        http_(*this) {
    const auto test = test_deadline();
    heartbeats_.add("evictor",
                    test.value_or(std::max(kMainLoopDeadlineFloor,
                                           20 * s.interval_seconds)));
    heartbeats_.add("crawler", test.value_or(kCrawlDeadline));
    heartbeats_.park("crawler");
    evictor_.set_progress_callback([this] { heartbeats_.beat("evictor"); });
    if (group_.valid()) {
      mode_ = "watch";
      watcher_.emplace(group_, index_, handles_, clock_);
      watcher_->set_wake_callback([this] { heartbeats_.beat("watcher"); });
      heartbeats_.add("watcher", test.value_or(kWatcherDeadline));
      rescan_interval_ *= kWatchRescanFactor;
      crawler_.set_dir_callback([this](int fd, DirId dir) {
        int err = 0;
        const HandleKey key = handle_of_dir(fd, group_.fsid(), err);
        if (key.valid()) {
          handles_.put(key, dir);
        }
      });
    }
    if (const char* stall = std::getenv(kTestStallEnv)) {
      heartbeats_.stall_for_test(stall);
    }
  }

  int run();

  StatusSnapshot status() override;
  std::vector<FileSnapshot> hot_files(std::size_t offset,
                                      std::size_t limit) override;
  std::vector<FileSnapshot> coldest_files(std::size_t offset,
                                          std::size_t limit) override;

 private:
  static CrawlOptions crawl_options(const Settings& s, bool watching) {
    CrawlOptions o;
    o.crawlers = s.crawlers;
    o.bucket_width = s.hex_bucket_len;
    // Watching, the index's record of use comes from events; a crawl
    // only adds what atime knows beyond it.
    o.policy = watching ? MergePolicy::kLaterOfBoth : MergePolicy::kStatIsTruth;
    return o;
  }
  void check_watcher();

  void collect_crawl();
  void schedule_crawl();
  void write_dump();

  const Settings& settings_;
  FanotifyGroup group_;
  std::string mode_reason_;
  std::atomic<bool> stop_{false};
  Waker waker_;
  SignalThread signals_;
  SystemClock clock_;
  SharedIndex index_;
  UsageMonitor usage_;
  CacheRoot root_;
  Deleter deleter_;
  // llm-d BlockRemoved events; null when --events-endpoint is empty, so
  // that no ZeroMQ exists. Declared before evictor_, which it must outlive.
  std::unique_ptr<BlockEventPublisher> events_;
  Evictor evictor_;
  Crawler crawler_;
  CrawlRunner crawls_;
  Heartbeats heartbeats_;
  DirHandles handles_;
  std::optional<Watcher> watcher_;
  HttpServer http_;

  std::string mode_ = "crawl";
  double rescan_interval_ = settings_.rescan_interval_seconds;
  // Events were lost; deletion holds until a crawl started after that
  // ends (see Evictor::set_hold).
  bool rescan_pending_ = false;
  bool rescan_again_ = false;
  bool first_crawl_replayed_ = false;
  bool force_crawl_ = false;
  unsigned held_rescans_ = 0;
  int root_error_ = 0;
  double last_progress_log_ = 0;
  std::uint64_t last_crawl_dirs_ = 0;
  std::mutex crawl_status_mutex_;
  CrawlStatus crawl_status_;
  std::atomic<bool> ready_{false};
};

int Daemon::run() {
  if (watcher_) {
    spdlog::info(
        "mode: watch ({}); hot files are those used within {} "
        "minutes by fanotify's record or by atime",
        mode_reason_, settings_.hot_minutes);
  } else {
    spdlog::info(
        "mode: crawl ({}); hot files are those whose atime or "
        "mtime is within {} minutes",
        mode_reason_, settings_.hot_minutes);
  }
  if (settings_.dry_run) {
    spdlog::warn("dry run: nothing will be deleted");
  }
  if (!settings_.metrics_address.empty()) {
    std::string error;
    if (!http_.start(settings_.metrics_address, error)) {
      spdlog::error("--metrics-address (METRICS_ADDRESS) {}: {}",
                    settings_.metrics_address, error);
      return 1;
    }
    spdlog::info("serving /metrics, /healthz, /readyz and /debug on port {}",
                 http_.port());
  }
  if (!settings_.events_endpoint.empty()) {
    PublisherOptions options;
    options.endpoint = settings_.events_endpoint;
    options.cache_root = root_location(settings_);
    events_ = std::make_unique<BlockEventPublisher>(std::move(options), clock_);
    events_->start();  // throws FatalError when it cannot bind
    evictor_.add_listener(*events_);
  }
  // Until the first crawl is complete the index cannot tell what is
  // oldest across the volume; only an emergency deletes from part of it.
  evictor_.set_hold(true, "for the first complete crawl");
  // Watch before the first crawl, so nothing that happens during it is
  // lost.
  if (watcher_) {
    watcher_->start();
  }

  while (!stop_) {
    // Crawl first: deletion works from whatever the index holds, so the
    // first crawl should be under way before the first usage check.
    check_watcher();
    schedule_crawl();

    evictor_.step();
    heartbeats_.beat("evictor");

    collect_crawl();

    waker_.wait(settings_.interval_seconds, stop_);
  }

  if (watcher_) {
    watcher_->stop();
  }
  if (events_) {
    events_->stop();  // sends what is queued; waits at most the linger
  }
  http_.stop();
  spdlog::info("stopped");
  return 0;
}

void Daemon::check_watcher() {
  if (!watcher_ || !watcher_->take_overflow()) {
    return;
  }
  if (!rescan_pending_) {
    spdlog::info(
        "events were lost: rescanning, deletion holds until the "
        "rescan ends");
  }
  rescan_pending_ = true;
  evictor_.set_hold(true, "for the rescan that follows lost events");
  // A crawl already running may have passed directories where the lost
  // events happened: run another once it ends.
  rescan_again_ = !crawls_.idle();
  force_crawl_ = crawls_.idle();
}

void Daemon::collect_crawl() {
  if (crawls_.running()) {
    // A crawl makes progress directory by directory.
    const std::uint64_t dirs = crawler_.progress().dirs.load();
    if (dirs != last_crawl_dirs_) {
      heartbeats_.beat("crawler");
      last_crawl_dirs_ = dirs;
    }
    const double now = monotonic_seconds();
    if (now - last_progress_log_ >= kCrawlProgressSeconds) {
      last_progress_log_ = now;
      const double elapsed = now - crawls_.started();
      const std::uint64_t files = crawler_.progress().files.load();
      spdlog::info(
          "crawl in progress: {} files, {} directories, {:.0f}s, "
          "{:.0f} files/s",
          files, dirs, elapsed, static_cast<double>(files) / elapsed);
    }
    return;
  }
  const auto done = crawls_.take_finished();
  if (!done) {
    return;
  }
  heartbeats_.park("crawler");
  const auto [files, bytes] = index_.with([](Index& i) {
    return std::pair{i.file_count(), i.total_bytes()};
  });
  log_crawl(*done, files, bytes);
  evictor_.crawl_finished(done->complete);
  {
    std::lock_guard lock(crawl_status_mutex_);
    crawl_status_.have_last = true;
    crawl_status_.last = *done;
    crawl_status_.skipped_links += done->links;
    crawl_status_.skipped_foreign += done->foreign;
    crawl_status_.skipped_errors += done->errors;
    ++(done->complete ? crawl_status_.completed : crawl_status_.stopped);
  }
  if (done->complete && !ready_.exchange(true)) {
    spdlog::info("index ready: first crawl complete");
    if (!rescan_pending_) {
      evictor_.set_hold(false);
    }
  }
  if (watcher_ && done->complete && !first_crawl_replayed_) {
    first_crawl_replayed_ = true;
    watcher_->initial_crawl_done();
  }
  if (rescan_pending_) {
    const bool lost_again = rescan_again_ || !done->complete;
    if (lost_again && ++held_rescans_ < kMaxHeldRescans) {
      rescan_again_ = false;
      force_crawl_ = true;
    } else {
      if (lost_again) {
        // Events are lost faster than a rescan completes. Holding longer
        // would let the volume fill; atime is what is left to go by.
        spdlog::warn(
            "events keep being lost during rescans ({} in a "
            "row); deletion resumes with the atime the last "
            "rescan merged",
            held_rescans_);
      } else {
        spdlog::info("rescan after lost events done; deletion resumes");
      }
      rescan_pending_ = rescan_again_ = false;
      held_rescans_ = 0;
      evictor_.set_hold(!ready_, "for the first complete crawl");
    }
  }
}

void Daemon::schedule_crawl() {
  if (!crawls_.idle()) {
    return;
  }
  // A root renamed away or replaced is reopened at once (two stat calls a
  // poll); until then the deleter refuses to work in the old tree.
  if (root_.valid() && root_.stale()) {
    force_crawl_ = true;
  }
  const double now = monotonic_seconds();
  const bool due = force_crawl_ ||
                   now - crawls_.started() >= rescan_interval_ ||
                   (evictor_.take_rescan_request() &&
                    now - crawls_.ended() >= kMinRescanGapSeconds);
  if (!due) {
    return;
  }
  const RootLocation where = root_location(settings_);
  const std::string root_path = where.path();
  if (!root_.valid() || root_.stale()) {
    int err = 0;
    root_ = CacheRoot::open(where, err);
    deleter_.forget_anchor();
    if (watcher_ && err == 0) {
      watcher_->set_root(where);
    }
    if (err != root_error_) {
      if (err == ELOOP || err == EXDEV) {
        spdlog::error(
            "cache directory {} ({}): {}; nothing is crawled or deleted "
            "until it is a plain directory on the volume; retrying every "
            "{:.0f}s",
            escape_bytes(root_path), "--cache-dir, CACHE_DIRECTORY",
            err == ELOOP ? "it is, or passes through, a symbolic link"
                         : "it is on another filesystem or mount than "
                           "--mount-path",
            settings_.rescan_interval_seconds);
      } else if (err != 0) {
        spdlog::warn("cache directory: {}; retrying every {:.0f}s",
                     sys_message("open", root_path, err),
                     settings_.rescan_interval_seconds);
      } else if (root_error_ != 0) {
        spdlog::info("cache directory {} is available",
                     escape_bytes(root_path));
      }
      root_error_ = err;
    }
  }
  if (!root_.valid()) {
    return;
  }
  force_crawl_ = false;
  last_progress_log_ = now;
  last_crawl_dirs_ = 0;
  heartbeats_.beat("crawler");
  crawls_.start(root_);
}

StatusSnapshot Daemon::status() {
  StatusSnapshot s;
  const TimeNs now = clock_.now();
  const TimeNs hot_window = seconds_to_ns(settings_.hot_minutes * 60);
  s.now_unix = ns_to_seconds(now);
  s.mode = mode_;
  s.mode_reason = mode_reason_;
  s.thresholds = evictor_config(settings_).thresholds;
  s.hot_window_seconds = settings_.hot_minutes * 60;
  s.evictor = evictor_.totals();
  index_.with([&](Index& i) {
    s.index = i.stats();
    s.hot_files = i.count_used_after(now - hot_window);
  });
  {
    std::lock_guard lock(crawl_status_mutex_);
    s.crawl = crawl_status_;
  }
  s.crawl.running = crawler_.progress().running.load();
  s.crawl.progress_files = crawler_.progress().files.load();
  if (watcher_) {
    const WatcherCounters& w = watcher_->counters();
    s.watch.enabled = true;
    s.watch.level = std::string(watch_level_name(group_.level()));
    s.watch.events = w.events.load();
    s.watch.applied = w.applied.load();
    s.watch.overflows = w.overflows.load();
    s.watch.malformed = w.malformed.load();
    s.watch.rescan_pending = rescan_pending_;
  }
  s.loops = heartbeats_.snapshot();
  s.ready = ready_.load();
  return s;
}

std::vector<FileSnapshot> Daemon::hot_files(std::size_t offset,
                                            std::size_t limit) {
  const TimeNs after = clock_.now() - seconds_to_ns(settings_.hot_minutes * 60);
  return index_.with([&](Index& i) { return i.hottest(after, offset, limit); });
}

std::vector<FileSnapshot> Daemon::coldest_files(std::size_t offset,
                                                std::size_t limit) {
  return index_.with([&](Index& i) { return i.coldest(offset, limit); });
}

void Daemon::write_dump() {
  const StatusSnapshot s = status();
  nlohmann::json dump = {
      {"status", health_json(s)},
      {"hotset", files_json(hot_files(0, kSignalDumpFiles), s.now_unix, 0,
                            kSignalDumpFiles)},
      {"coldest", files_json(coldest_files(0, kSignalDumpFiles), s.now_unix, 0,
                             kSignalDumpFiles)}};
  const std::string path =
      fmt::format("{}/pvc-evictor-dump-{}.json", settings_.dump_dir,
                  static_cast<long long>(s.now_unix));
  std::ofstream out(path);
  out << dump.dump(2) << '\n';
  if (out) {
    spdlog::info("SIGUSR1: wrote diagnostics to {}", escape_bytes(path));
  } else {
    spdlog::warn("SIGUSR1: cannot write diagnostics to {}", escape_bytes(path));
  }
}

// Signals before the daemon's own signal thread exists (waiting for the
// mount, setting up the watch): only a flag is set.
volatile std::sig_atomic_t g_early_stop = 0;

void on_early_signal(int) {
  g_early_stop = 1;
}

bool wait_for_mount(const Settings& s) {
  struct sigaction sa {};
  sa.sa_handler = on_early_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  const double deadline = monotonic_seconds() + s.mount_wait_seconds;
  bool said = false;
  for (;;) {
    struct stat st {};
    const bool found = ::stat(s.mount_path.c_str(), &st) == 0;
    if (found && S_ISDIR(st.st_mode)) {
      return true;
    }
    // Something other than a directory will not turn into one by waiting.
    const int err = found ? ENOTDIR : errno;
    if (err == ENOTDIR) {
      spdlog::error("mount path {} (--mount-path, PVC_MOUNT_PATH): {}",
                    escape_bytes(s.mount_path), describe_errno(err));
      return false;
    }
    if (monotonic_seconds() >= deadline || g_early_stop != 0) {
      if (g_early_stop == 0) {
        spdlog::error("mount path {} is not available after {:.0f}s: {}",
                      escape_bytes(s.mount_path), s.mount_wait_seconds,
                      describe_errno(err));
      }
      return false;
    }
    if (!said) {
      spdlog::warn("waiting up to {:.0f}s for mount path {} ({})",
                   s.mount_wait_seconds, escape_bytes(s.mount_path),
                   describe_errno(err));
      said = true;
    }
    ::usleep(100'000);
  }
}

// Logs the init container's findings; returns them for the mode choice.
ProbeFindings load_probe_report(const Settings& s) {
  if (s.probe_report.empty()) {
    return {};
  }
  std::string error;
  ProbeFindings f = read_probe_report(s.probe_report, error);
  if (!f.loaded) {
    spdlog::warn("--probe-report (PROBE_REPORT) {}: {}; deciding without it",
                 escape_bytes(s.probe_report), error);
    return f;
  }
  spdlog::info("probe report: fanotify {}, atime behaves as {}",
               f.fanotify_available ? "available" : "unavailable",
               f.atime_behaviour.empty() ? "unknown" : f.atime_behaviour);
  return f;
}

// Decides the mode. Returns false when --mode watch cannot be had.
bool set_up_watch(const Settings& s, const ProbeFindings& probe,
                  WatchSetup& out) {
  if (s.mode == Mode::kCrawl) {
    out.reason = "configured";
    return true;
  }
  if (s.mode == Mode::kAuto && probe.loaded && !probe.fanotify_available) {
    out.reason = "auto: probe report says fanotify is unavailable: " +
                 probe.fanotify_reason;
    spdlog::warn(
        "watch mode unavailable, falling back to crawl mode "
        "(atime-based hot protection): the probe report says {}",
        probe.fanotify_reason);
    return true;
  }
  // The mark covers the whole filesystem, which is the mount path's: the
  // cache root may not exist yet, and is used only when it is on the same
  // mount (CacheRoot), so a link there cannot move the mark elsewhere.
  const std::string& where = s.mount_path;
  int err = 0;
  std::string detail;
  FanotifyGroup group = FanotifyGroup::open(where, err, detail);
  std::string why;
  if (group.valid() && !watch_self_check(group, where, why)) {
    group = FanotifyGroup();
    detail = "self-check failed: " + why;
    err = 0;
  }
  if (!group.valid()) {
    const std::string reason =
        err != 0 ? sys_message("fanotify on", where, err) + ": " + detail
                 : detail;
    if (s.mode == Mode::kWatch) {
      spdlog::error("--mode watch (EVICTOR_MODE) cannot be used: {}", reason);
      return false;
    }
    spdlog::warn(
        "watch mode unavailable, falling back to crawl mode "
        "(atime-based hot protection): {}",
        reason);
    out.reason = "auto fallback: " + reason;
    return true;
  }
  if (const int stop_err = group.stop_directory_events(); stop_err != 0) {
    spdlog::warn(
        "watch: cannot stop directory events ({}); the daemon's "
        "own crawls will pass through the queue",
        describe_errno(stop_err));
  }
  out.reason = fmt::format("fanotify filesystem mark on {} ({}), level {}",
                           escape_bytes(where), describe(group.fs()),
                           watch_level_name(group.level()));
  if (!detail.empty()) {
    spdlog::info("watch: richer levels refused: {}", detail);
  }
  if (group.events_may_be_incomplete()) {
    spdlog::warn(
        "watch: {} may be used from other machines, whose reads this "
        "kernel never sees; combining events with atime",
        describe(group.fs()));
  }
  spdlog::info("watch: kernel queue holds {} events", group.queue_events());
  out.group = std::move(group);
  return true;
}

}  // namespace

int run_daemon(const Settings& settings) {
  spdlog::info("pvc-evictor {} starting: {}", PVC_EVICTOR_VERSION,
               describe(settings));
  if (!wait_for_mount(settings)) {
    return g_early_stop != 0 ? 0 : 1;
  }
  const ProbeFindings probe = load_probe_report(settings);
  WatchSetup watch;
  if (!set_up_watch(settings, probe, watch)) {
    return 1;
  }
  if (!watch.group.valid() && !probe.atime_behaviour.empty() &&
      probe.atime_behaviour != "strictatime") {
    spdlog::warn(
        "crawl mode on a volume where atime behaves as {}: a file read "
        "continuously can look cold and be deleted; set strictatime in the "
        "PV or StorageClass mountOptions, or run the privileged deployment",
        probe.atime_behaviour);
  }
  // Before any thread starts: capabilities are per thread.
  spdlog::info("capabilities: {}", drop_capabilities());
  if (g_early_stop != 0) {
    return 0;
  }
  Daemon daemon(settings, std::move(watch));
  return daemon.run();
}

}  // namespace pvc
