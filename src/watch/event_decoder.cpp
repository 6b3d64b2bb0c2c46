#include "watch/event_decoder.hpp"

#include <linux/fanotify.h>

#include <cstring>

#include "watch/fanotify_abi.hpp"

namespace pvc {
namespace {

using Metadata = fanotify_event_metadata;
using InfoHeader = fanotify_event_info_header;

// An info record carrying a handle: the header, the fsid, then a struct
// file_handle (handle_bytes, handle_type, the bytes) and, for the DFID_NAME
// kinds, a NUL-terminated name padded to 4 bytes.
constexpr std::size_t kFsidOffset = sizeof(InfoHeader);
constexpr std::size_t kFsidBytes = 8;
constexpr std::size_t kHandleHeaderOffset = kFsidOffset + kFsidBytes;
constexpr std::size_t kHandleBytesOffset = kHandleHeaderOffset + 8;
static_assert(sizeof(fanotify_event_info_fid) == kHandleHeaderOffset);

template <typename T>
T load(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// Reads one handle record of `len` bytes at `rec` (its header already
// checked to lie inside the event). Returns false if it is malformed.
bool read_fid_record(const std::uint8_t* rec, std::size_t len, bool named,
                     HandleKey& key, std::string_view& name) {
  if (len < kHandleBytesOffset) {
    return false;
  }
  const auto handle_bytes = load<std::uint32_t>(rec + kHandleHeaderOffset);
  const std::size_t room = len - kHandleBytesOffset;
  if (handle_bytes == 0 || handle_bytes > room) {
    return false;
  }
  key = HandleKey::make(load<std::uint64_t>(rec + kFsidOffset),
                        load<std::int32_t>(rec + kHandleHeaderOffset + 4),
                        rec + kHandleBytesOffset, handle_bytes);
  if (!named) {
    name = {};
    return true;
  }
  const std::uint8_t* start = rec + kHandleBytesOffset + handle_bytes;
  const std::size_t left = room - handle_bytes;
  const void* nul = std::memchr(start, '\0', left);
  if (nul == nullptr || nul == start) {
    return false;  // unterminated or empty: the kernel sends neither
  }
  name = std::string_view(reinterpret_cast<const char*>(start),
                          static_cast<const std::uint8_t*>(nul) - start);
  return true;
}

// Reads the info records of one event into `ev`. Returns false if one of
// them is malformed.
bool read_records(const std::uint8_t* p, std::size_t left, DecodedEvent& ev,
                  DecodeStats& stats) {
  while (left > 0) {
    if (left < sizeof(InfoHeader)) {
      return false;
    }
    const auto header = load<InfoHeader>(p);
    // A length below the header's own size (zero above all) would never
    // advance; one past the event would read the next event as this one.
    if (header.len < sizeof(InfoHeader) || header.len > left) {
      return false;
    }
    bool ok = true;
    switch (header.info_type) {
      case kFanInfoDfidName:
      case kFanInfoOldDfidName:
        ok = read_fid_record(p, header.len, true, ev.dir, ev.name);
        break;
      case kFanInfoDfid:
        ok = read_fid_record(p, header.len, false, ev.dir, ev.name);
        break;
      case kFanInfoNewDfidName:
        ok = read_fid_record(p, header.len, true, ev.new_dir, ev.new_name);
        break;
      case kFanInfoFid: {
        std::string_view unused;
        ok = read_fid_record(p, header.len, false, ev.object, unused);
        break;
      }
      default:
        ++stats.unknown_info;
        break;
    }
    if (!ok) {
      return false;
    }
    p += header.len;
    left -= header.len;
  }
  return true;
}

}  // namespace

DecodeStats& DecodeStats::operator+=(const DecodeStats& other) {
  events += other.events;
  overflows += other.overflows;
  malformed += other.malformed;
  unknown_info += other.unknown_info;
  return *this;
}

void decode_events(std::span<const std::uint8_t> buffer,
                   std::vector<DecodedEvent>& out, DecodeStats& stats) {
  out.clear();
  const std::uint8_t* p = buffer.data();
  std::size_t left = buffer.size();
  while (left > 0) {
    if (left < sizeof(Metadata)) {
      ++stats.malformed;  // a truncated event; read() returns whole ones
      return;
    }
    const auto meta = load<Metadata>(p);
    // Another version may lay events out differently, and a bad event
    // length leaves no way to find the next event: give up on the buffer.
    if (meta.vers != FANOTIFY_METADATA_VERSION ||
        meta.event_len < sizeof(Metadata) || meta.event_len > left) {
      ++stats.malformed;
      return;
    }
    const std::size_t event_len = meta.event_len;
    if (meta.metadata_len < sizeof(Metadata) || meta.metadata_len > event_len) {
      ++stats.malformed;
    } else {
      DecodedEvent& ev = out.emplace_back();
      ev.mask = meta.mask;
      ev.pid = meta.pid;
      ev.overflow = (meta.mask & FAN_Q_OVERFLOW) != 0;
      if (read_records(p + meta.metadata_len, event_len - meta.metadata_len, ev,
                       stats)) {
        ++stats.events;
        stats.overflows += ev.overflow ? 1 : 0;
      } else {
        ++stats.malformed;
        out.pop_back();
      }
    }
    p += event_len;
    left -= event_len;
  }
}

}  // namespace pvc
