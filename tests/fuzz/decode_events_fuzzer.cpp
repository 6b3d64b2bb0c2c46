// libFuzzer target: the fanotify record decoder, pvc::decode_events.
//
// The input is one buffer as read() would return it from a fanotify
// descriptor. The decoder must never read outside it (AddressSanitizer
// watches every load, and libFuzzer hands over an exactly sized heap copy),
// and what it returns must be consistent with what it counted:
// - one returned event per counted event, overflows among them;
// - every name a view inside the buffer, without a NUL byte, and only
//   where a named record said so;
// - handles no longer than an info record can be;
// - decoding the same bytes again, into a vector that already holds
//   events, gives the same result.
#include <linux/fanotify.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>
#include <vector>

#include "watch/event_decoder.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "decode_events invariant broken: %s\n", what);
  std::abort();
}

void check_view(std::string_view name, const std::uint8_t* begin,
                std::size_t size) {
  if (name.empty()) {
    return;
  }
  const auto* first = reinterpret_cast<const std::uint8_t*>(name.data());
  if (first < begin || first + name.size() > begin + size) {
    fail("a name points outside the buffer");
  }
  if (name.find('\0') != std::string_view::npos) {
    fail("a name holds a NUL byte");
  }
  // Touch every byte so that a view past the end is caught by ASan even if
  // the pointer arithmetic above were wrong.
  volatile unsigned sum = 0;
  for (const char c : name) {
    sum = sum + static_cast<unsigned char>(c);
  }
}

void check_key(const pvc::HandleKey& key) {
  // An info record's length is 16 bits, so a handle inside one is shorter.
  if (key.size > 65535 - 20) {
    fail("a handle longer than an info record can hold");
  }
  if (!key.hashed()) {
    for (std::size_t i = key.size; i < key.bytes.size(); ++i) {
      if (key.bytes[i] != 0) {
        fail("bytes past an inline handle are not zero");
      }
    }
  }
  (void)key.hash();
}

bool same(const pvc::DecodedEvent& a, const pvc::DecodedEvent& b) {
  return a.mask == b.mask && a.pid == b.pid && a.overflow == b.overflow &&
         a.dir == b.dir && a.name == b.name && a.object == b.object &&
         a.new_dir == b.new_dir && a.new_name == b.new_name &&
         a.name.data() == b.name.data() &&
         a.new_name.data() == b.new_name.data();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const std::span<const std::uint8_t> buffer(data, size);
  std::vector<pvc::DecodedEvent> out;
  pvc::DecodeStats stats;
  pvc::decode_events(buffer, out, stats);

  if (stats.events != out.size()) {
    fail("events counted differ from events returned");
  }
  if (stats.overflows > stats.events) {
    fail("more overflows than events");
  }
  std::uint64_t overflows = 0;
  for (const pvc::DecodedEvent& ev : out) {
    check_view(ev.name, data, size);
    check_view(ev.new_name, data, size);
    check_key(ev.dir);
    check_key(ev.object);
    check_key(ev.new_dir);
    if (ev.overflow != ((ev.mask & FAN_Q_OVERFLOW) != 0)) {
      fail("overflow flag disagrees with the mask");
    }
    overflows += ev.overflow ? 1 : 0;
    if (!ev.new_name.empty() && !ev.new_dir.valid()) {
      fail("a new name without a new directory handle");
    }
    if (!ev.name.empty() && !ev.dir.valid()) {
      fail("a name without a directory handle");
    }
  }
  if (overflows != stats.overflows) {
    fail("overflow events counted differ from those returned");
  }
  // Every whole event is at least the metadata; a buffer yields no more
  // events than it has room for.
  if (out.size() > size / sizeof(fanotify_event_metadata)) {
    fail("more events than the buffer has room for");
  }

  // Again, into a vector that is not empty: same events, same counts.
  std::vector<pvc::DecodedEvent> again(3);
  pvc::DecodeStats stats2;
  pvc::decode_events(buffer, again, stats2);
  if (again.size() != out.size() || stats2.events != stats.events ||
      stats2.malformed != stats.malformed ||
      stats2.unknown_info != stats.unknown_info ||
      stats2.overflows != stats.overflows) {
    fail("decoding the same buffer twice differs");
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!same(out[i], again[i])) {
      fail("decoding the same buffer twice gives different events");
    }
  }
  pvc::DecodeStats total;
  total += stats;
  total += stats2;
  if (total.events != 2 * stats.events) {
    fail("DecodeStats::operator+= lost events");
  }
  return 0;
}
