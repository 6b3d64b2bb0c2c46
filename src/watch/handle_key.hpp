// How fanotify names a file or directory, as a value the watcher can use as
// a hash-map key.
//
// In file-handle mode the kernel never says which path an event is about:
// it sends the filesystem id (statfs f_fsid) and an opaque file handle of
// the parent directory, and of the object itself where asked. The watcher
// keeps a map from those bytes to its own directory ids and fills it by
// asking name_to_handle_at() for the handle of each directory it crawls.
// For a directory that call returns exactly the bytes fanotify reports,
// needs no privilege and, unlike open_by_handle_at(), never turns a handle
// into a descriptor, so the daemon stays unable to reach files by handle.
//
// Shape, and why:
// - A fixed 48-byte value with no heap behind it: the decoder builds up to
//   three per event at millions of events a second, and the watcher's map
//   holds one per directory.
// - Handles of the filesystems caches live on fit inline (ext4 and xfs use
//   8 or 12 bytes, tmpfs 12, btrfs 20). Longer ones (NFS and overlayfs,
//   up to 128 bytes) keep their first 24 bytes and a 64-bit hash of the
//   whole handle in the last 8, so two of them are confused only if they
//   share that prefix and the hash; the length is kept in full.
// - Bytes past the handle are always zero, so the defaulted comparison and
//   hash() need no length-dependent branches.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace pvc {

struct HandleKey {
  static constexpr std::size_t kInlineBytes = 32;
  // Long handles keep this much of their start; the hash fills the rest.
  static constexpr std::size_t kHashedPrefixBytes = kInlineBytes - 8;

  std::uint64_t fsid = 0;  // the 8 raw bytes of f_fsid, as the kernel sends
  std::int32_t type = 0;   // file_handle.handle_type
  std::uint16_t size = 0;  // file_handle.handle_bytes; 0 means "no handle"
  std::array<std::uint8_t, kInlineBytes> bytes{};

  // The key of a handle of `size` bytes (at most 65535, which the 16-bit
  // length of an info record guarantees).
  static HandleKey make(std::uint64_t fsid, std::int32_t type,
                        const std::uint8_t* handle, std::size_t size);

  bool valid() const { return size != 0; }
  // Whether the key holds a hash of the handle rather than all of it.
  bool hashed() const { return size > kInlineBytes; }
  std::size_t hash() const;

  friend bool operator==(const HandleKey&, const HandleKey&) = default;
};

struct HandleKeyHash {
  std::size_t operator()(const HandleKey& key) const noexcept {
    return key.hash();
  }
};

// A 64-bit hash of a handle too long to keep inline.
std::uint64_t hash_long_handle(const std::uint8_t* handle, std::size_t size);

// "fsid 8c7e3a10f2b94d55 type 1 handle 0c000000b67da43d", for logs and
// test failures.
std::string to_string(const HandleKey& key);

// The filesystem id of the filesystem `fd` is on, as fanotify reports it in
// its info records (fanotify_event_info_fid.fsid is statfs f_fsid). Sets
// `err` and returns 0 on failure.
std::uint64_t fsid_of(int fd, int& err);

// The key fanotify uses for the object `fd` refers to (any descriptor,
// O_PATH ones included; the watcher uses it on directories). Returns an
// invalid key and sets `err` on failure: EOPNOTSUPP when the filesystem
// cannot encode handles at all.
HandleKey handle_of_dir(int dirfd, int& err);
// The same with the filesystem id already known, saving an fstatfs() per
// directory during a crawl.
HandleKey handle_of_dir(int dirfd, std::uint64_t fsid, int& err);

// ---------------------------------------------------------------------------

inline HandleKey HandleKey::make(std::uint64_t fsid, std::int32_t type,
                                 const std::uint8_t* handle, std::size_t size) {
  HandleKey key;
  key.fsid = fsid;
  key.type = type;
  key.size = static_cast<std::uint16_t>(size);
  if (size <= kInlineBytes) {
    std::memcpy(key.bytes.data(), handle, size);
  } else {
    std::memcpy(key.bytes.data(), handle, kHashedPrefixBytes);
    const std::uint64_t h = hash_long_handle(handle, size);
    std::memcpy(key.bytes.data() + kHashedPrefixBytes, &h, sizeof(h));
  }
  return key;
}

inline std::size_t HandleKey::hash() const {
  // Multiply-xorshift over the fixed-size key, then a full avalanche so the
  // low bits that power-of-two tables use depend on every input byte.
  constexpr std::uint64_t kMul = 0x9e3779b97f4a7c15ULL;
  const auto step = [](std::uint64_t h, std::uint64_t word) {
    h = (h ^ word) * kMul;
    return h ^ (h >> 32);
  };
  std::uint64_t words[kInlineBytes / 8];
  std::memcpy(words, bytes.data(), sizeof(words));
  std::uint64_t h = step(
      fsid,
      (static_cast<std::uint64_t>(static_cast<std::uint32_t>(type)) << 32) |
          size);
  for (const std::uint64_t word : words) {
    h = step(h, word);
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return static_cast<std::size_t>(h);
}

}  // namespace pvc
