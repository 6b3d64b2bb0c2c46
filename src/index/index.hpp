// The index: every cache file the daemon knows of, its size, its last use and
// whether it is open, kept in age order so the coldest file is always at the
// head.
//
// Shape, and why:
// - Files live in a slab of fixed-size entries addressed by 32-bit ids; the
//   age order is an intrusive doubly-linked list through those ids. A use
//   seen as an event moves a file to the tail in O(1), which is what a
//   watcher applying a million events a second needs.
// - Times that come from a crawl are arbitrary (atime can be anything), so
//   those entries wait in a pending set and are merged into the list in one
//   sorted pass the next time someone asks for the coldest files.
// - Block names ("<16 hex>.bin", nearly all of them) are stored as their
//   64-bit hash; other names go to a side table. Directories are interned
//   once with short names stored inline. The lookup sets hold only ids.
//   Together that keeps a tracked file near 100 bytes.
// - Crawls stamp a generation on what they see; a complete crawl drops what
//   it did not see, which is how files deleted behind the daemon's back
//   leave the index.
//
// The index does no I/O and takes no locks; SharedIndex adds the one mutex
// that the crawlers, the watcher and the deleter share.
#pragma once

#include <tsl/robin_map.h>
#include <tsl/robin_set.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "layout/names.hpp"

namespace pvc {

using FileId = std::uint32_t;
using DirId = std::uint32_t;
constexpr std::uint32_t kNoId = UINT32_MAX;

// What a stat of a cache file said.
struct FileObservation {
  std::uint64_t ino = 0;
  std::uint64_t bytes = 0;  // allocated bytes, st_blocks * 512
  TimeNs atime = 0;
  TimeNs mtime = 0;
};

// How a crawl's observation combines with what the index already holds.
enum class MergePolicy : std::uint8_t {
  // Crawl mode: the file's timestamps are the only record of use, so the
  // latest stat wins (a test or a tool may also move atime backwards).
  kStatIsTruth,
  // Watch mode: the later of the recorded event and the stat wins.
  kLaterOfBoth,
};

// Where a file's last-use time came from, for diagnostics.
enum class UseSource : std::uint8_t { kStat, kEvent };

// A copy of one file's record, taken under the lock and used without it.
struct FileSnapshot {
  FileId id = kNoId;
  DirId dir = kNoId;
  std::string dir_path;  // relative to the cache root, "" for the root
  std::string name;
  FileKind kind = FileKind::kBlock;
  std::uint64_t ino = 0;
  std::uint64_t bytes = 0;
  TimeNs last_use = 0;
  UseSource source = UseSource::kStat;
  std::uint16_t open_count = 0;
};

// What select_victims() should take.
struct VictimQuery {
  TimeNs now = 0;          // monotonic, compared with deferrals
  TimeNs cold_before = 0;  // wall clock: files used after this are hot
  bool allow_hot = false;  // emergency: hot files may go, oldest first
  std::size_t max_files = 0;
  std::uint64_t max_bytes = 0;  // stop once this many bytes are chosen
};

struct VictimSkips {
  std::size_t hot = 0;      // candidates left because they are hot
  std::size_t open = 0;     // left because they are open
  std::size_t backoff = 0;  // left because a recent delete failed
};

struct IndexStats {
  std::size_t files = 0;
  std::size_t temp_files = 0;
  std::size_t dirs = 0;
  std::uint64_t bytes = 0;
  std::size_t open_files = 0;
  TimeNs coldest_use = 0;  // 0 when there are no blocks
  std::size_t memory_bytes = 0;
};

class Index {
 public:
  Index();

  // --- directories -------------------------------------------------------
  DirId root() const { return 0; }
  // Interns a directory, marking it seen by the current crawl.
  DirId add_dir(DirId parent, std::string_view name);
  std::optional<DirId> find_dir(DirId parent, std::string_view name) const;
  std::string dir_path(DirId dir) const;
  std::string_view dir_name(DirId dir) const;
  DirId dir_parent(DirId dir) const;
  unsigned dir_depth(DirId dir) const;
  bool dir_live(DirId dir) const;
  // Forgets an empty directory; returns false if it still has children.
  bool remove_dir(DirId dir);
  // Directories that became empty because files or subdirectories left
  // them, and that the writer may recreate (bucket-like, below the model
  // directories). Taken once; the caller re-checks on disk.
  std::vector<DirId> take_empty_dirs();
  // How many directories (inodes) removing the empty directory `dir` will
  // eventually free: itself and every removable ancestor it leaves empty.
  std::size_t dirs_freed_by_removing(DirId dir) const;

  // --- files --------------------------------------------------------------
  // Records a stat of a file, inserting it if new. `now` caps timestamps
  // that lie in the future.
  FileId observe(DirId dir, std::string_view name, FileKind kind,
                 const FileObservation& seen, MergePolicy policy, TimeNs now);
  std::optional<FileId> find_file(DirId dir, std::string_view name) const;
  // Records a use seen as an event at time `when`.
  void touch(FileId id, TimeNs when);
  void open_file(FileId id, TimeNs when);
  void close_file(FileId id, TimeNs when);
  void remove_file(FileId id);
  bool file_live(FileId id) const;
  // Whether `id` still names the file with inode `ino` (ids are reused).
  bool file_is(FileId id, std::uint64_t ino) const;
  FileSnapshot snapshot(FileId id) const;
  std::string file_name(FileId id) const;

  // Delete failed: leave the file alone until `retry_at` (monotonic).
  void defer_file(FileId id, TimeNs retry_at);

  // --- age order ----------------------------------------------------------
  // The coldest cold blocks, oldest first, within the query's limits.
  std::vector<FileSnapshot> select_victims(const VictimQuery& query,
                                           VictimSkips& skips);
  // Up to `limit` blocks in age order, oldest first, skipping the first
  // `offset` (diagnostics).
  std::vector<FileSnapshot> coldest(std::size_t offset, std::size_t limit);
  std::vector<FileSnapshot> coldest(std::size_t limit) {
    return coldest(0, limit);
  }
  // Blocks used after `after`, most recent first, paged the same way.
  std::vector<FileSnapshot> hottest(TimeNs after, std::size_t offset,
                                    std::size_t limit);
  // How many blocks were used after `t` (the hot set, for summaries).
  std::size_t count_used_after(TimeNs t);
  // Temp files whose last use is before `before`, at most `limit`.
  std::vector<FileSnapshot> stale_temps(TimeNs before, std::size_t limit);

  // --- crawl generations --------------------------------------------------
  void begin_crawl();
  // After a complete crawl, forgets files and directories it did not see.
  // Returns the number of files forgotten.
  std::size_t end_crawl(bool complete);

  IndexStats stats();
  std::size_t file_count() const { return live_files_; }
  std::uint64_t total_bytes() const { return total_bytes_; }

 private:
  struct FileEntry;
  struct DirEntry;
  struct FileKey;
  struct DirKey;
  struct FileHash;
  struct FileEq;
  struct DirHash;
  struct DirEq;

  using FileSet = tsl::robin_set<FileId, FileHash, FileEq>;
  using DirSet = tsl::robin_set<DirId, DirHash, DirEq>;

  FileKey key_of(FileId id) const;
  std::string_view long_name(FileId id) const;

  FileId alloc_file();
  void link_tail(FileId id);
  void link_before(FileId id, FileId next);
  void unlink(FileId id);
  void make_pending(FileId id);
  void drop_pending(FileId id);
  void settle();
  void set_last_use(FileId id, TimeNs when, UseSource source);
  void note_dir_lost_child(DirId dir);
  FileSnapshot snapshot_locked(FileId id) const;

  std::vector<FileEntry> files_;
  std::vector<FileId> free_files_;
  tsl::robin_map<FileId, std::string> long_names_;
  tsl::robin_map<FileId, TimeNs> deferred_;
  tsl::robin_set<FileId> temps_;  // temp files are kept out of the age list
  std::vector<FileId> pending_;
  FileId head_ = kNoId;
  FileId tail_ = kNoId;

  std::vector<DirEntry> dirs_;
  std::vector<DirId> free_dirs_;
  tsl::robin_map<DirId, std::string> long_dir_names_;
  std::vector<DirId> empty_dirs_;

  std::unique_ptr<FileSet> file_set_;
  std::unique_ptr<DirSet> dir_set_;

  std::uint8_t generation_ = 0;
  std::size_t live_files_ = 0;
  std::size_t live_dirs_ = 0;
  std::size_t open_files_ = 0;
  std::uint64_t total_bytes_ = 0;

 public:
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;
};

// The index and the one lock that guards it.
class SharedIndex {
 public:
  template <typename F>
  decltype(auto) with(F&& fn) {
    std::lock_guard lock(mutex_);
    return fn(index_);
  }

 private:
  std::mutex mutex_;
  Index index_;
};

}  // namespace pvc
