// Turns the bytes read() returns from a fanotify descriptor into events the
// watcher can apply, trusting none of the lengths in them.
//
// Shape, and why:
// - Pure: no I/O, no logging, no allocation per event (names are views into
//   the read buffer, handles are HandleKey values, the output vector is
//   reused), so it can be tested byte by byte and keeps up with a kernel
//   queue draining at millions of events a second.
// - Defensive: the metadata version, every event length, every info record
//   length and every handle length is checked against what is left of the
//   buffer before anything is read through it. A bad info record costs its
//   event; a bad event length costs the rest of the buffer, because the
//   next event cannot be found without it. Both are counted as malformed,
//   and the watcher treats either like a queue overflow: events were lost,
//   so rescan.
// - Info types it does not know are skipped by their length and counted, so
//   a kernel that adds records does not break the daemon.
//
// What an event means is the watcher's business, with two kernel habits to
// keep in mind. Events on the same object that wait in the queue together
// are merged into one mask, and the order is lost: a file created, read and
// deleted before the read arrives as one FAN_CREATE|FAN_OPEN|FAN_DELETE
// event, so a mask with several directory-entry bits means "look at the
// disk". And an event on a directory itself (FAN_ONDIR without a
// directory-entry bit) names the directory's own handle with the name ".".
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "watch/handle_key.hpp"

namespace pvc {

struct DecodedEvent {
  std::uint64_t mask = 0;  // FAN_* bits, possibly several merged events
  std::int32_t pid = 0;    // the process that caused it (its tgid)
  bool overflow = false;   // FAN_Q_OVERFLOW: events were dropped; rescan
  // The directory holding the entry the event is about (DFID_NAME, DFID or,
  // for FAN_RENAME, OLD_DFID_NAME) and the entry's name; "" when the event
  // came without a name.
  HandleKey dir;
  std::string_view name;
  // The object's own handle (FID record), when the group reports it: for
  // opens and closes with FAN_REPORT_FID, and for creates, deletes and
  // renames only with FAN_REPORT_TARGET_FID.
  HandleKey object;
  // FAN_RENAME only: where the entry went (NEW_DFID_NAME).
  HandleKey new_dir;
  std::string_view new_name;
};

struct DecodeStats {
  std::uint64_t events = 0;        // events returned, overflow events too
  std::uint64_t overflows = 0;     // FAN_Q_OVERFLOW events among them
  std::uint64_t malformed = 0;     // events or buffer tails dropped as bad
  std::uint64_t unknown_info = 0;  // info records skipped for their type

  DecodeStats& operator+=(const DecodeStats& other);
};

// Decodes one buffer of whole events as read() returned it. Replaces the
// contents of `out` (keeping its capacity) and adds to `stats`. The names
// in `out` point into `buffer` and live as long as its contents do.
void decode_events(std::span<const std::uint8_t> buffer,
                   std::vector<DecodedEvent>& out, DecodeStats& stats);

}  // namespace pvc
