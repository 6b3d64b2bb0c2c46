// The watcher: drains the fanotify queue and keeps the index current.
//
// One thread waits on the fanotify descriptor and an eventfd together, so
// a stop wakes it at once. It reads whole buffers, decodes them, and
// applies each buffer's events to the index under one lock hold: opens,
// reads and closes move files to the hot end and count open descriptors;
// creates, renames and deletes change membership. It never reads a data
// file. Entries it has not seen yet (a temp file renamed into a block, a
// new bucket directory) are looked up with fstatat or name_to_handle_at
// after the lock is released. A directory the crawl has not recorded is
// found from the handle in the event (open_by_handle_at, which keeps
// CAP_DAC_READ_SEARCH among the daemon's capabilities).
//
// Events the daemon caused itself are dropped by pid. Events for
// directories outside the cache root (a filesystem mark sees the whole
// filesystem) resolve to no directory and are dropped. Until the first
// crawl has recorded every directory's handle, events whose directory is
// not known yet are kept (bounded) and replayed when it ends, so nothing
// that happens during the crawl is lost.
//
// A queue overflow means events were lost: the watcher counts it, says so
// once, and raises a flag the daemon answers with a rescan.
#pragma once

#include <tsl/robin_set.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "common/unique_fd.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"
#include "watch/dir_handles.hpp"
#include "watch/event_decoder.hpp"
#include "watch/fanotify_group.hpp"

namespace pvc {

struct WatcherCounters {
  std::atomic<std::uint64_t> events{0};   // decoded, own ones included
  std::atomic<std::uint64_t> applied{0};  // changed the index
  std::atomic<std::uint64_t> overflows{0};
  std::atomic<std::uint64_t> malformed{0};
  std::atomic<std::uint64_t> unresolved{0};  // directory not in the cache
  std::atomic<std::uint64_t> own{0};         // caused by this daemon
};

class Watcher {
 public:
  Watcher(FanotifyGroup& group, SharedIndex& index, DirHandles& handles,
          const Clock& clock);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // The root the watcher resolves new entries beneath. The watcher opens
  // its own descriptor of it on its own thread, so the daemon can reopen
  // its root (deleted and recreated) without sharing one across threads.
  // Call before start() and whenever the daemon reopens the root.
  void set_root(RootLocation where) {
    {
      std::lock_guard lock(root_mutex_);
      root_where_ = std::move(where);
    }
    reopen_root_ = true;
    wake();
  }

  // Called on the watcher's thread every time it wakes (at least once a
  // second), for the health endpoint.
  void set_wake_callback(std::function<void()> fn) { on_wake_ = std::move(fn); }

  void start();
  void stop();

  // True once after a queue overflow (or malformed records): the index
  // may be missing uses, and a rescan should merge atime back in.
  bool take_overflow() { return overflow_.exchange(false); }
  // The first crawl has recorded every directory handle: replay what was
  // kept, and stop keeping unresolved events.
  void initial_crawl_done();
  // Seconds since the thread last woke (it wakes at least every second),
  // for the health endpoint.
  double last_wake() const { return last_wake_.load(); }
  const WatcherCounters& counters() const { return counters_; }

  // One buffer's worth of events, as the thread applies them. Public so
  // that tests and benchmarks can feed recorded buffers.
  void apply(const std::vector<DecodedEvent>& events);

 private:
  struct Lookup {  // an entry to look at on disk after the lock is gone
    DirId dir;
    std::string name;
    bool is_dir;
    bool used;  // opened or read: record a use at `when`
    TimeNs when;
  };
  struct Kept {  // an event whose directory was not known yet
    HandleKey dir;
    std::string name;
    std::uint64_t mask;
    TimeNs when;
  };

  void run();
  void wake();
  void drain();
  void resolve_unknown_dirs(const std::vector<DecodedEvent>& events);
  void resolve_dir(const CacheRoot& root, const HandleKey& key);
  void remember_outside(const HandleKey& key);
  void replay_kept();
  void apply_one(Index& index, const DecodedEvent& e, DirId dir, TimeNs now);
  void resolve_lookups();
  void keep_unresolved(const DecodedEvent& e, TimeNs now);

  FanotifyGroup& group_;
  SharedIndex& index_;
  DirHandles& handles_;
  const Clock& clock_;
  std::mutex root_mutex_;
  RootLocation root_where_;
  std::atomic<bool> reopen_root_{false};
  CacheRoot root_;  // only used on the watcher's thread
  const int own_pid_;
  UniqueFd wake_fd_;
  std::jthread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> overflow_{false};
  std::atomic<bool> keeping_{true};
  std::atomic<bool> replay_requested_{false};
  std::atomic<double> last_wake_{0};
  bool overflow_logged_ = false;
  std::function<void()> on_wake_;

  std::vector<std::uint8_t> buffer_;
  std::vector<DecodedEvent> decoded_;
  DecodeStats decode_stats_;
  std::vector<Lookup> lookups_;
  std::vector<Kept> kept_;  // only touched on the watcher's thread
  // Directory handles known to lie outside the cache root (or gone).
  tsl::robin_set<HandleKey, HandleKeyHash> outside_;
  bool lazy_dirs_ = true;  // open_by_handle_at works
  WatcherCounters counters_;
};

}  // namespace pvc
