#include "watch/handle_key.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/statfs.h>

#include <atomic>
#include <cerrno>
#include <new>

namespace pvc {
namespace {

// MAX_HANDLE_SZ in the kernel: no filesystem encodes a longer handle.
constexpr std::size_t kMaxHandleBytes = 128;

// AT_HANDLE_FID (Linux 6.5) asks for the handle exactly as fanotify encodes
// it, which also works on filesystems that report events but cannot be
// exported. Older kernels refuse the flag with EINVAL; their plain handles
// are the same bytes on every filesystem that fanotify accepts.
constexpr int kAtHandleFid = 0x200;
std::atomic<bool> g_handle_fid_known{true};

}  // namespace

std::uint64_t hash_long_handle(const std::uint8_t* handle, std::size_t size) {
  // FNV-1a with a final avalanche: long handles come only from network and
  // overlay filesystems, where simplicity matters more than speed.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < size; ++i) {
    h = (h ^ handle[i]) * 0x100000001b3ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

std::string to_string(const HandleKey& key) {
  std::string hex;
  const std::size_t shown = key.hashed() ? HandleKey::kInlineBytes : key.size;
  for (std::size_t i = 0; i < shown; ++i) {
    hex += fmt::format("{:02x}", key.bytes[i]);
  }
  return fmt::format("fsid {:016x} type {} handle {}{}", key.fsid, key.type,
                     hex,
                     key.hashed() ? fmt::format(" (hashed, {} bytes)", key.size)
                                  : std::string());
}

std::uint64_t fsid_of(int fd, int& err) {
  struct statfs st {};
  if (::fstatfs(fd, &st) != 0) {
    err = errno;
    return 0;
  }
  static_assert(sizeof(st.f_fsid) == sizeof(std::uint64_t));
  std::uint64_t fsid = 0;
  std::memcpy(&fsid, &st.f_fsid, sizeof(fsid));
  err = 0;
  return fsid;
}

HandleKey handle_of_dir(int dirfd, int& err) {
  const std::uint64_t fsid = fsid_of(dirfd, err);
  if (err != 0) {
    return {};
  }
  return handle_of_dir(dirfd, fsid, err);
}

HandleKey handle_of_dir(int dirfd, std::uint64_t fsid, int& err) {
  alignas(
      file_handle) unsigned char storage[sizeof(file_handle) + kMaxHandleBytes];
  auto* handle = new (storage) file_handle{};
  int mount_id = 0;
  int flags = AT_EMPTY_PATH;
  if (g_handle_fid_known.load(std::memory_order_relaxed)) {
    flags |= kAtHandleFid;
  }
  for (;;) {
    handle->handle_bytes = kMaxHandleBytes;
    if (::name_to_handle_at(dirfd, "", handle, &mount_id, flags) == 0) {
      break;
    }
    if (errno == EINVAL && (flags & kAtHandleFid) != 0) {
      g_handle_fid_known.store(false, std::memory_order_relaxed);
      flags &= ~kAtHandleFid;
      continue;
    }
    err = errno;
    return {};
  }
  if (handle->handle_bytes == 0 || handle->handle_bytes > kMaxHandleBytes) {
    err = EOVERFLOW;  // a kernel bug; never a key that could match anything
    return {};
  }
  err = 0;
  return HandleKey::make(
      fsid, handle->handle_type,
      reinterpret_cast<const std::uint8_t*>(handle->f_handle),
      handle->handle_bytes);
}

}  // namespace pvc
