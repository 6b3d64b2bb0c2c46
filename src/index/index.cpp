#include "index/index.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>

namespace pvc {
namespace {

constexpr std::uint64_t kBytesPerBlock = 512;
constexpr std::size_t kInlineDirName = 16;
constexpr std::uint8_t kMaxDepth = UINT8_MAX;
constexpr float kDirSetLoad = 0.8F;
// A pending list this long (a first crawl) is given back after the merge;
// shorter ones keep their capacity for the next crawl.
constexpr std::size_t kKeepPendingCapacity = 1U << 16U;

// File entry flags.
constexpr std::uint8_t kLive = 1U << 0U;
constexpr std::uint8_t kPackedName = 1U << 1U;
constexpr std::uint8_t kTempFile = 1U << 2U;
constexpr std::uint8_t kLinked = 1U << 3U;
constexpr std::uint8_t kPending = 1U << 4U;
constexpr std::uint8_t kEventSource = 1U << 5U;

// Directory entry flags.
constexpr std::uint8_t kDirLive = 1U << 0U;
constexpr std::uint8_t kDirLongName = 1U << 1U;
constexpr std::uint8_t kDirRemovable = 1U << 2U;
constexpr std::uint8_t kDirQueued = 1U << 3U;

// The deepest directories that are never removed: the root (0) and the
// model, rank and config directories directly below it (1).
constexpr unsigned kFirstRemovableDepth = 2;

std::uint64_t mix64(std::uint64_t x) {
  // A 64-bit finaliser (splitmix64): block hashes are already uniform, but
  // directory ids are small consecutive integers and need spreading.
  x ^= x >> 30U;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27U;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31U;
  return x;
}

std::uint32_t to_blocks(std::uint64_t bytes) {
  const std::uint64_t blocks = (bytes + kBytesPerBlock - 1) / kBytesPerBlock;
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(blocks, UINT32_MAX));
}

}  // namespace

struct Index::FileEntry {
  std::uint64_t ino = 0;
  TimeNs last_use = 0;
  std::uint64_t hash = 0;  // the block hash when kPackedName
  DirId dir = kNoId;
  std::uint32_t blocks = 0;  // 512-byte units
  // In the age list: neighbours. While pending: prev is the slot in
  // pending_. While free: next is the next free id.
  std::uint32_t prev = kNoId;
  std::uint32_t next = kNoId;
  std::uint16_t open_count = 0;
  std::uint8_t flags = 0;
  std::uint8_t gen = 0;

  std::uint64_t bytes() const { return blocks * kBytesPerBlock; }
};

struct Index::DirEntry {
  DirId parent = kNoId;
  std::uint32_t files = 0;
  std::uint32_t subdirs = 0;
  std::uint8_t depth = 0;
  std::uint8_t flags = 0;
  std::uint8_t gen = 0;
  std::uint8_t name_len = 0;
  std::array<char, kInlineDirName> name{};
};

struct Index::FileKey {
  DirId dir;
  bool packed;
  std::uint64_t hash;
  std::string_view name;

  static FileKey make(DirId dir, std::string_view name) {
    if (auto h = block_hash(name)) {
      return {dir, true, *h, {}};
    }
    return {dir, false, 0, name};
  }
  std::size_t digest() const {
    const std::uint64_t h = packed ? hash : std::hash<std::string_view>{}(name);
    return static_cast<std::size_t>(mix64(h ^ mix64(dir)));
  }
  bool operator==(const FileKey& o) const {
    return dir == o.dir && packed == o.packed &&
           (packed ? hash == o.hash : name == o.name);
  }
};

struct Index::DirKey {
  DirId parent;
  std::string_view name;
  std::size_t digest() const {
    return static_cast<std::size_t>(
        mix64(std::hash<std::string_view>{}(name) ^ mix64(parent)));
  }
  bool operator==(const DirKey& o) const {
    return parent == o.parent && name == o.name;
  }
};

struct Index::FileHash {
  using is_transparent = void;
  const Index* index;
  std::size_t operator()(FileId id) const { return index->key_of(id).digest(); }
  std::size_t operator()(const FileKey& key) const { return key.digest(); }
};

struct Index::FileEq {
  using is_transparent = void;
  const Index* index;
  FileKey key(FileId id) const { return index->key_of(id); }
  bool operator()(FileId a, FileId b) const { return a == b; }
  bool operator()(FileId a, const FileKey& b) const { return key(a) == b; }
  bool operator()(const FileKey& a, FileId b) const { return a == key(b); }
};

struct Index::DirHash {
  using is_transparent = void;
  const Index* index;
  std::size_t operator()(DirId id) const {
    return DirKey{index->dirs_[id].parent, index->dir_name(id)}.digest();
  }
  std::size_t operator()(const DirKey& key) const { return key.digest(); }
};

struct Index::DirEq {
  using is_transparent = void;
  const Index* index;
  DirKey key(DirId id) const {
    return {index->dirs_[id].parent, index->dir_name(id)};
  }
  bool operator()(DirId a, DirId b) const { return a == b; }
  bool operator()(DirId a, const DirKey& b) const { return key(a) == b; }
  bool operator()(const DirKey& a, DirId b) const { return a == key(b); }
};

Index::Index()
    : file_set_(std::make_unique<FileSet>(0, FileHash{this}, FileEq{this})),
      dir_set_(std::make_unique<DirSet>(0, DirHash{this}, DirEq{this})) {
  // Directory lookups come from crawls and directory events, far fewer
  // than file lookups, and most directories hold one or two files: a
  // fuller table saves about 8 bytes per file at the cost of a probe or
  // two. The file set keeps the default, because every event looks up a
  // file and each probe there reads an entry.
  dir_set_->max_load_factor(kDirSetLoad);
  dirs_.emplace_back().flags = kDirLive;
  live_dirs_ = 1;
}

Index::~Index() = default;

// --- directories -----------------------------------------------------------

DirId Index::add_dir(DirId parent, std::string_view name) {
  if (auto it = dir_set_->find(DirKey{parent, name}); it != dir_set_->end()) {
    dirs_[*it].gen = generation_;
    return *it;
  }
  DirId id = 0;
  if (!free_dirs_.empty()) {
    id = free_dirs_.back();
    free_dirs_.pop_back();
    dirs_[id] = DirEntry{};
  } else {
    id = static_cast<DirId>(dirs_.size());
    dirs_.emplace_back();
  }
  DirEntry& d = dirs_[id];
  DirEntry& p = dirs_[parent];
  d.parent = parent;
  d.depth =
      p.depth == kMaxDepth ? kMaxDepth : static_cast<std::uint8_t>(p.depth + 1);
  d.gen = generation_;
  d.flags = kDirLive;
  if (d.depth >= kFirstRemovableDepth && is_bucket_dir_name(name)) {
    d.flags |= kDirRemovable;
  }
  if (name.size() <= kInlineDirName) {
    d.name_len = static_cast<std::uint8_t>(name.size());
    std::memcpy(d.name.data(), name.data(), name.size());
  } else {
    d.flags |= kDirLongName;
    long_dir_names_.emplace(id, std::string(name));
  }
  ++p.subdirs;
  ++live_dirs_;
  dir_set_->insert(id);
  return id;
}

std::optional<DirId> Index::find_dir(DirId parent,
                                     std::string_view name) const {
  if (auto it = dir_set_->find(DirKey{parent, name}); it != dir_set_->end()) {
    return *it;
  }
  return std::nullopt;
}

std::string_view Index::dir_name(DirId dir) const {
  const DirEntry& d = dirs_[dir];
  if ((d.flags & kDirLongName) != 0) {
    return long_dir_names_.at(dir);
  }
  return {d.name.data(), d.name_len};
}

std::string Index::dir_path(DirId dir) const {
  std::array<DirId, kMaxDepth> chain{};
  std::size_t n = 0;
  for (DirId d = dir; d != root() && n < chain.size(); d = dirs_[d].parent) {
    chain[n++] = d;
  }
  std::string path;
  while (n > 0) {
    if (!path.empty()) {
      path += '/';
    }
    path += dir_name(chain[--n]);
  }
  return path;
}

DirId Index::dir_parent(DirId dir) const {
  return dirs_[dir].parent;
}

unsigned Index::dir_depth(DirId dir) const {
  return dirs_[dir].depth;
}

bool Index::dir_live(DirId dir) const {
  return dir < dirs_.size() && (dirs_[dir].flags & kDirLive) != 0;
}

bool Index::remove_dir(DirId dir) {
  DirEntry& d = dirs_[dir];
  if (dir == root() || (d.flags & kDirLive) == 0 || d.files != 0 ||
      d.subdirs != 0) {
    return false;
  }
  dir_set_->erase(dir);
  long_dir_names_.erase(dir);
  const DirId parent = d.parent;
  d.flags = 0;
  free_dirs_.push_back(dir);
  --live_dirs_;
  --dirs_[parent].subdirs;
  note_dir_lost_child(parent);
  return true;
}

void Index::note_dir_lost_child(DirId dir) {
  DirEntry& d = dirs_[dir];
  constexpr std::uint8_t kWanted = kDirLive | kDirRemovable;
  if ((d.flags & (kWanted | kDirQueued)) == kWanted && d.files == 0 &&
      d.subdirs == 0) {
    d.flags |= kDirQueued;
    empty_dirs_.push_back(dir);
  }
}

std::size_t Index::dirs_freed_by_removing(DirId dir) const {
  // The directory itself, then each ancestor left with nothing else.
  std::size_t n = 0;
  for (DirId d = dir; dir_live(d) && d != root(); d = dirs_[d].parent) {
    const DirEntry& e = dirs_[d];
    const bool only_child_chain = d == dir ? e.files == 0 && e.subdirs == 0
                                           : e.files == 0 && e.subdirs == 1;
    if ((e.flags & kDirRemovable) == 0 || !only_child_chain) {
      break;
    }
    ++n;
  }
  return n;
}

std::vector<DirId> Index::take_empty_dirs() {
  std::vector<DirId> out;
  for (const DirId dir : empty_dirs_) {
    DirEntry& d = dirs_[dir];
    d.flags &= static_cast<std::uint8_t>(~kDirQueued);
    if ((d.flags & kDirLive) != 0 && d.files == 0 && d.subdirs == 0) {
      out.push_back(dir);
    }
  }
  empty_dirs_.clear();
  return out;
}

// --- files -----------------------------------------------------------------

Index::FileKey Index::key_of(FileId id) const {
  const FileEntry& e = files_[id];
  if ((e.flags & kPackedName) != 0) {
    return {e.dir, true, e.hash, {}};
  }
  return {e.dir, false, 0, long_name(id)};
}

std::string_view Index::long_name(FileId id) const {
  return long_names_.at(id);
}

std::string Index::file_name(FileId id) const {
  const FileEntry& e = files_[id];
  if ((e.flags & kPackedName) != 0) {
    return block_name(e.hash);
  }
  return std::string(long_name(id));
}

FileId Index::alloc_file() {
  if (!free_files_.empty()) {
    const FileId id = free_files_.back();
    free_files_.pop_back();
    files_[id] = FileEntry{};
    return id;
  }
  files_.emplace_back();
  return static_cast<FileId>(files_.size() - 1);
}

FileId Index::observe(DirId dir, std::string_view name, FileKind kind,
                      const FileObservation& seen, MergePolicy policy,
                      TimeNs now) {
  const bool future = std::max(seen.atime, seen.mtime) > now;
  const TimeNs stat_use = future ? now : std::max(seen.atime, seen.mtime);
  const FileKey key = FileKey::make(dir, name);

  if (auto it = file_set_->find(key); it != file_set_->end()) {
    const FileId id = *it;
    FileEntry& e = files_[id];
    e.gen = generation_;
    total_bytes_ -= e.bytes();
    e.blocks = to_blocks(seen.bytes);
    total_bytes_ += e.bytes();
    TimeNs use = e.last_use;
    if (e.ino != seen.ino) {
      // Same name, different file: the writer replaced it.
      e.ino = seen.ino;
      use = stat_use;
    } else if (policy == MergePolicy::kLaterOfBoth) {
      use = std::max(e.last_use, stat_use);
    } else if (!future) {
      use = stat_use;
    }
    if (use != e.last_use) {
      set_last_use(id, use, UseSource::kStat);
    }
    return id;
  }

  const FileId id = alloc_file();
  FileEntry& e = files_[id];
  e.ino = seen.ino;
  e.dir = dir;
  e.blocks = to_blocks(seen.bytes);
  e.last_use = stat_use;
  e.gen = generation_;
  e.flags = kLive;
  if (key.packed) {
    e.flags |= kPackedName;
    e.hash = key.hash;
  } else {
    long_names_.emplace(id, std::string(name));
  }
  if (kind == FileKind::kTemp) {
    e.flags |= kTempFile;
    temps_.insert(id);
  } else {
    make_pending(id);
  }
  file_set_->insert(id);
  ++dirs_[dir].files;
  ++live_files_;
  total_bytes_ += e.bytes();
  return id;
}

std::optional<FileId> Index::find_file(DirId dir, std::string_view name) const {
  if (auto it = file_set_->find(FileKey::make(dir, name));
      it != file_set_->end()) {
    return *it;
  }
  return std::nullopt;
}

bool Index::file_live(FileId id) const {
  return id < files_.size() && (files_[id].flags & kLive) != 0;
}

bool Index::file_is(FileId id, std::uint64_t ino) const {
  return file_live(id) && files_[id].ino == ino;
}

void Index::set_last_use(FileId id, TimeNs when, UseSource source) {
  FileEntry& e = files_[id];
  e.last_use = when;
  e.flags = source == UseSource::kEvent
                ? static_cast<std::uint8_t>(e.flags | kEventSource)
                : static_cast<std::uint8_t>(e.flags & ~kEventSource);
  if ((e.flags & kLinked) != 0) {
    unlink(id);
    make_pending(id);
  }
}

void Index::touch(FileId id, TimeNs when) {
  FileEntry& e = files_[id];
  if ((e.flags & kLinked) == 0) {
    e.last_use = std::max(e.last_use, when);
    e.flags |= kEventSource;
    return;
  }
  // Events arrive in time order, so a used file belongs at the tail. The
  // clamp keeps the list sorted if the wall clock stepped backwards.
  if (tail_ != id) {
    unlink(id);
    link_tail(id);
  }
  e.last_use = std::max(when, files_[e.prev == kNoId ? id : e.prev].last_use);
  e.flags |= kEventSource;
}

void Index::open_file(FileId id, TimeNs when) {
  FileEntry& e = files_[id];
  if (e.open_count == 0) {
    ++open_files_;
  }
  if (e.open_count < UINT16_MAX) {
    ++e.open_count;
  }
  touch(id, when);
}

void Index::close_file(FileId id, TimeNs when) {
  FileEntry& e = files_[id];
  // A close without a seen open is normal for files opened before the
  // watch began; the count simply stays at zero.
  if (e.open_count > 0 && --e.open_count == 0) {
    --open_files_;
  }
  touch(id, when);
}

void Index::remove_file(FileId id) {
  FileEntry& e = files_[id];
  if ((e.flags & kLive) == 0) {
    return;
  }
  file_set_->erase(id);
  if ((e.flags & kLinked) != 0) {
    unlink(id);
  } else if ((e.flags & kPending) != 0) {
    drop_pending(id);
  }
  if ((e.flags & kPackedName) == 0) {
    long_names_.erase(id);
  }
  if ((e.flags & kTempFile) != 0) {
    temps_.erase(id);
  }
  if (e.open_count > 0) {
    --open_files_;
  }
  deferred_.erase(id);
  total_bytes_ -= e.bytes();
  --live_files_;
  const DirId dir = e.dir;
  e = FileEntry{};
  free_files_.push_back(id);
  --dirs_[dir].files;
  note_dir_lost_child(dir);
}

void Index::defer_file(FileId id, TimeNs retry_at) {
  if (file_live(id)) {
    deferred_[id] = retry_at;
  }
}

FileSnapshot Index::snapshot(FileId id) const {
  return snapshot_locked(id);
}

FileSnapshot Index::snapshot_locked(FileId id) const {
  const FileEntry& e = files_[id];
  FileSnapshot s;
  s.id = id;
  s.dir = e.dir;
  s.dir_path = dir_path(e.dir);
  s.name = file_name(id);
  s.kind = (e.flags & kTempFile) != 0 ? FileKind::kTemp : FileKind::kBlock;
  s.ino = e.ino;
  s.bytes = e.bytes();
  s.last_use = e.last_use;
  s.source =
      (e.flags & kEventSource) != 0 ? UseSource::kEvent : UseSource::kStat;
  s.open_count = e.open_count;
  return s;
}

// --- age order -------------------------------------------------------------

void Index::link_tail(FileId id) {
  link_before(id, kNoId);
}

void Index::link_before(FileId id, FileId next) {
  FileEntry& e = files_[id];
  const FileId prev = next == kNoId ? tail_ : files_[next].prev;
  e.prev = prev;
  e.next = next;
  (prev == kNoId ? head_ : files_[prev].next) = id;
  (next == kNoId ? tail_ : files_[next].prev) = id;
  e.flags |= kLinked;
}

void Index::unlink(FileId id) {
  FileEntry& e = files_[id];
  (e.prev == kNoId ? head_ : files_[e.prev].next) = e.next;
  (e.next == kNoId ? tail_ : files_[e.next].prev) = e.prev;
  e.prev = e.next = kNoId;
  e.flags &= static_cast<std::uint8_t>(~kLinked);
}

void Index::make_pending(FileId id) {
  FileEntry& e = files_[id];
  e.flags |= kPending;
  e.prev = static_cast<std::uint32_t>(pending_.size());
  pending_.push_back(id);
}

void Index::drop_pending(FileId id) {
  FileEntry& e = files_[id];
  const std::uint32_t slot = e.prev;
  const FileId moved = pending_.back();
  pending_[slot] = moved;
  files_[moved].prev = slot;
  pending_.pop_back();
  e.prev = kNoId;
  e.flags &= static_cast<std::uint8_t>(~kPending);
}

void Index::settle() {
  if (pending_.empty()) {
    return;
  }
  std::sort(pending_.begin(), pending_.end(), [this](FileId a, FileId b) {
    const TimeNs ta = files_[a].last_use;
    const TimeNs tb = files_[b].last_use;
    return ta != tb ? ta < tb : a < b;
  });
  // One merge pass. Start from the tail when everything pending is newer
  // than the list, the common case once the first crawl is done.
  FileId cursor = head_;
  if (tail_ != kNoId &&
      files_[pending_.front()].last_use >= files_[tail_].last_use) {
    cursor = kNoId;
  }
  for (const FileId id : pending_) {
    FileEntry& e = files_[id];
    e.flags &= static_cast<std::uint8_t>(~kPending);
    while (cursor != kNoId && files_[cursor].last_use <= e.last_use) {
      cursor = files_[cursor].next;
    }
    link_before(id, cursor);
  }
  pending_.clear();
  if (pending_.capacity() > kKeepPendingCapacity) {
    pending_.shrink_to_fit();
  }
}

std::vector<FileSnapshot> Index::select_victims(const VictimQuery& q,
                                                VictimSkips& skips) {
  settle();
  std::vector<FileSnapshot> out;
  std::uint64_t chosen = 0;
  for (FileId id = head_;
       id != kNoId && out.size() < q.max_files && chosen < q.max_bytes;
       id = files_[id].next) {
    const FileEntry& e = files_[id];
    if (e.last_use > q.cold_before && !q.allow_hot) {
      ++skips.hot;  // everything after this one is hotter still
      break;
    }
    if (e.open_count > 0) {
      ++skips.open;
      continue;
    }
    if (auto it = deferred_.find(id); it != deferred_.end()) {
      if (it->second > q.now) {
        ++skips.backoff;
        continue;
      }
      deferred_.erase(it);
    }
    out.push_back(snapshot_locked(id));
    chosen += e.bytes();
  }
  return out;
}

std::vector<FileSnapshot> Index::coldest(std::size_t offset,
                                         std::size_t limit) {
  settle();
  std::vector<FileSnapshot> out;
  FileId id = head_;
  for (std::size_t skipped = 0; id != kNoId && skipped < offset; ++skipped) {
    id = files_[id].next;
  }
  for (; id != kNoId && out.size() < limit; id = files_[id].next) {
    out.push_back(snapshot_locked(id));
  }
  return out;
}

std::vector<FileSnapshot> Index::hottest(TimeNs after, std::size_t offset,
                                         std::size_t limit) {
  settle();
  std::vector<FileSnapshot> out;
  FileId id = tail_;
  for (std::size_t skipped = 0;
       id != kNoId && skipped < offset && files_[id].last_use > after;
       ++skipped) {
    id = files_[id].prev;
  }
  for (; id != kNoId && out.size() < limit && files_[id].last_use > after;
       id = files_[id].prev) {
    out.push_back(snapshot_locked(id));
  }
  return out;
}

std::size_t Index::count_used_after(TimeNs t) {
  settle();
  std::size_t n = 0;
  for (FileId id = tail_; id != kNoId && files_[id].last_use > t;
       id = files_[id].prev) {
    ++n;
  }
  return n;
}

std::vector<FileSnapshot> Index::stale_temps(TimeNs before, std::size_t limit) {
  std::vector<FileSnapshot> out;
  for (const FileId id : temps_) {
    if (out.size() >= limit) {
      break;
    }
    const FileEntry& e = files_[id];
    if (e.last_use < before && e.open_count == 0) {
      out.push_back(snapshot_locked(id));
    }
  }
  return out;
}

// --- crawl generations -----------------------------------------------------

void Index::begin_crawl() {
  ++generation_;
  dirs_[root()].gen = generation_;
}

std::size_t Index::end_crawl(bool complete) {
  if (!complete) {
    return 0;
  }
  std::size_t dropped = 0;
  for (FileId id = 0; id < files_.size(); ++id) {
    const FileEntry& e = files_[id];
    if ((e.flags & kLive) != 0 && e.gen != generation_) {
      remove_file(id);
      ++dropped;
    }
  }
  std::vector<DirId> stale;
  for (DirId id = 1; id < dirs_.size(); ++id) {
    if ((dirs_[id].flags & kDirLive) != 0 && dirs_[id].gen != generation_) {
      stale.push_back(id);
    }
  }
  std::sort(stale.begin(), stale.end(), [this](DirId a, DirId b) {
    return dirs_[a].depth > dirs_[b].depth;
  });
  for (const DirId id : stale) {
    remove_dir(id);
  }
  // Empty buckets the crawl found (left by a writer, an earlier run, or
  // emptied behind the daemon's back) are offered for removal too.
  for (DirId id = 1; id < dirs_.size(); ++id) {
    note_dir_lost_child(id);
  }
  return dropped;
}

IndexStats Index::stats() {
  settle();
  IndexStats s;
  s.files = live_files_;
  s.temp_files = temps_.size();
  s.dirs = live_dirs_;
  s.bytes = total_bytes_;
  s.open_files = open_files_;
  s.coldest_use = head_ == kNoId ? 0 : files_[head_].last_use;
  constexpr std::size_t kSetBucket = 8;  // id + probe distance
  s.memory_bytes =
      files_.capacity() * sizeof(FileEntry) +
      dirs_.capacity() * sizeof(DirEntry) +
      file_set_->bucket_count() * kSetBucket +
      dir_set_->bucket_count() * kSetBucket +
      temps_.bucket_count() * kSetBucket +
      (pending_.capacity() + free_files_.capacity() + free_dirs_.capacity()) *
          sizeof(std::uint32_t);
  return s;
}

}  // namespace pvc
