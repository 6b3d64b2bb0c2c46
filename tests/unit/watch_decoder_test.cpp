#include <gtest/gtest.h>
#include <linux/fanotify.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "watch/event_decoder.hpp"
#include "watch/fanotify_abi.hpp"

namespace pvc {
namespace {

// Buffers are assembled byte by byte as the kernel lays them out, so each
// test can break exactly one length and see what the decoder makes of it.
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kFsid = 0x1122334455667788ULL;
constexpr std::int32_t kInoGen = 1;  // FILEID_INO32_GEN, ext4's handle type
constexpr std::int32_t kPid = 4242;
const Bytes kDirHandle = {0x0c, 0, 0, 0, 0xb6, 0x7d, 0xa4, 0x3d};
const Bytes kOtherDirHandle = {0x0d, 0, 0, 0, 0x01, 0x02, 0x03, 0x04};
const Bytes kFileHandle = {0x21, 0x30, 0, 0, 0x99, 0x7e, 0x25, 0xe4};

// Offsets into an event built by event() (metadata first, then records).
constexpr std::size_t kEventLenAt = 0;
constexpr std::size_t kVersAt = 4;
constexpr std::size_t kMetadataLenAt = 6;
constexpr std::size_t kFirstRecordAt = sizeof(fanotify_event_metadata);
constexpr std::size_t kRecordLenAt = 2;           // within a record
constexpr std::size_t kRecordHandleBytesAt = 12;  // within a record

template <typename T>
void put(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

template <typename T>
void poke(Bytes& out, std::size_t at, T value) {
  std::memcpy(out.data() + at, &value, sizeof(T));
}

// A handle record: header, fsid, struct file_handle, optional name, padded
// to 4 bytes as the kernel does.
Bytes record(std::uint8_t type, const Bytes& handle, std::string_view name,
             bool named, std::uint64_t fsid = kFsid) {
  Bytes out;
  put<std::uint8_t>(out, type);
  put<std::uint8_t>(out, 0);
  put<std::uint16_t>(out, 0);  // length, set below
  put(out, fsid);
  put(out, static_cast<std::uint32_t>(handle.size()));
  put(out, kInoGen);
  out.insert(out.end(), handle.begin(), handle.end());
  if (named) {
    out.insert(out.end(), name.begin(), name.end());
    out.push_back(0);
  }
  while (out.size() % 4 != 0) {
    out.push_back(0);
  }
  poke(out, kRecordLenAt, static_cast<std::uint16_t>(out.size()));
  return out;
}

Bytes dfid_name(const Bytes& handle, std::string_view name,
                std::uint8_t type = kFanInfoDfidName) {
  return record(type, handle, name, true);
}

Bytes fid(const Bytes& handle) {
  return record(kFanInfoFid, handle, {}, false);
}

Bytes event(std::uint64_t mask, std::initializer_list<Bytes> records,
            std::int32_t pid = kPid) {
  Bytes out;
  put<std::uint32_t>(out, 0);  // event_len, set below
  put<std::uint8_t>(out, FANOTIFY_METADATA_VERSION);
  put<std::uint8_t>(out, 0);
  put(out, static_cast<std::uint16_t>(sizeof(fanotify_event_metadata)));
  put<std::uint64_t>(out, mask);
  put<std::int32_t>(out, FAN_NOFD);
  put<std::int32_t>(out, pid);
  for (const Bytes& r : records) {
    out.insert(out.end(), r.begin(), r.end());
  }
  poke(out, kEventLenAt, static_cast<std::uint32_t>(out.size()));
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

HandleKey key(const Bytes& handle, std::uint64_t fsid = kFsid) {
  return HandleKey::make(fsid, kInoGen, handle.data(), handle.size());
}

// The events keep views into the buffer, so the buffer travels with them
// (a moved vector keeps its storage).
struct Decoded {
  Bytes buffer;
  std::vector<DecodedEvent> events;
  DecodeStats stats;
};

Decoded decode(Bytes buffer) {
  Decoded d;
  d.buffer = std::move(buffer);
  decode_events(d.buffer, d.events, d.stats);
  return d;
}

TEST(WatchDecoder, SingleDfidNameEvent) {
  const Decoded d =
      decode(event(FAN_OPEN, {dfid_name(kDirHandle, "0a1b.bin")}));
  const Bytes& buf = d.buffer;
  ASSERT_EQ(d.events.size(), 1U);
  const DecodedEvent& ev = d.events[0];
  EXPECT_EQ(ev.mask, FAN_OPEN);
  EXPECT_EQ(ev.pid, kPid);
  EXPECT_FALSE(ev.overflow);
  EXPECT_EQ(ev.dir, key(kDirHandle));
  EXPECT_EQ(ev.name, "0a1b.bin");
  EXPECT_FALSE(ev.object.valid());
  EXPECT_FALSE(ev.new_dir.valid());
  EXPECT_TRUE(ev.new_name.empty());
  EXPECT_EQ(d.stats.events, 1U);
  EXPECT_EQ(d.stats.malformed, 0U);
  EXPECT_EQ(d.stats.unknown_info, 0U);
  // The name is a view into the buffer, not a copy.
  EXPECT_GE(ev.name.data(), reinterpret_cast<const char*>(buf.data()));
  EXPECT_LT(ev.name.data(),
            reinterpret_cast<const char*>(buf.data() + buf.size()));
}

TEST(WatchDecoder, DfidNameAndFid) {
  const Decoded d = decode(
      event(FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE,
            {dfid_name(kDirHandle, "00000000000000ff.bin"), fid(kFileHandle)}));
  ASSERT_EQ(d.events.size(), 1U);
  const DecodedEvent& ev = d.events[0];
  EXPECT_EQ(ev.mask, FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE);
  EXPECT_EQ(ev.dir, key(kDirHandle));
  EXPECT_EQ(ev.name, "00000000000000ff.bin");
  EXPECT_EQ(ev.object, key(kFileHandle));
  EXPECT_NE(ev.object, ev.dir);
}

TEST(WatchDecoder, RenameCarriesBothEnds) {
  const Decoded d = decode(event(
      kFanRename,
      {dfid_name(kDirHandle, "0123456789abcdef.bin_7.tmp", kFanInfoOldDfidName),
       dfid_name(kOtherDirHandle, "0123456789abcdef.bin", kFanInfoNewDfidName),
       fid(kFileHandle)}));
  ASSERT_EQ(d.events.size(), 1U);
  const DecodedEvent& ev = d.events[0];
  EXPECT_EQ(ev.mask, kFanRename);
  EXPECT_EQ(ev.dir, key(kDirHandle));
  EXPECT_EQ(ev.name, "0123456789abcdef.bin_7.tmp");
  EXPECT_EQ(ev.new_dir, key(kOtherDirHandle));
  EXPECT_EQ(ev.new_name, "0123456789abcdef.bin");
  EXPECT_EQ(ev.object, key(kFileHandle));
}

TEST(WatchDecoder, DirectoryRecordWithoutName) {
  const Decoded d = decode(event(
      FAN_OPEN | FAN_ONDIR, {record(kFanInfoDfid, kDirHandle, {}, false)}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.events[0].dir, key(kDirHandle));
  EXPECT_TRUE(d.events[0].name.empty());
}

TEST(WatchDecoder, OverflowEventHasNoRecords) {
  const Decoded d = decode(event(FAN_Q_OVERFLOW, {}, -1));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_TRUE(d.events[0].overflow);
  EXPECT_FALSE(d.events[0].dir.valid());
  EXPECT_EQ(d.stats.events, 1U);
  EXPECT_EQ(d.stats.overflows, 1U);
  EXPECT_EQ(d.stats.malformed, 0U);
}

TEST(WatchDecoder, SeveralEventsInOneBuffer) {
  const Decoded d = decode(concat({
      event(FAN_CREATE | FAN_ONDIR, {dfid_name(kDirHandle, "m_r0")}),
      event(FAN_OPEN, {dfid_name(kOtherDirHandle, "a.bin"), fid(kFileHandle)},
            7),
      event(FAN_Q_OVERFLOW, {}, -1),
      event(FAN_DELETE, {dfid_name(kOtherDirHandle, "b.bin")}, 8),
  }));
  ASSERT_EQ(d.events.size(), 4U);
  EXPECT_EQ(d.events[0].name, "m_r0");
  EXPECT_EQ(d.events[0].mask, FAN_CREATE | FAN_ONDIR);
  EXPECT_EQ(d.events[1].name, "a.bin");
  EXPECT_EQ(d.events[1].pid, 7);
  EXPECT_EQ(d.events[1].dir, key(kOtherDirHandle));
  EXPECT_EQ(d.events[1].object, key(kFileHandle));
  EXPECT_TRUE(d.events[2].overflow);
  EXPECT_EQ(d.events[3].name, "b.bin");
  EXPECT_EQ(d.events[3].mask, FAN_DELETE);
  EXPECT_FALSE(d.events[3].object.valid());
  EXPECT_EQ(d.stats.events, 4U);
  EXPECT_EQ(d.stats.overflows, 1U);
}

TEST(WatchDecoder, EmptyBufferHasNoEvents) {
  const Decoded d = decode({});
  EXPECT_TRUE(d.events.empty());
  EXPECT_EQ(d.stats.malformed, 0U);
}

TEST(WatchDecoder, TruncatedMetadataIsMalformed) {
  const Bytes good = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  Bytes buf = concat({good, good});
  buf.resize(good.size() + sizeof(fanotify_event_metadata) - 1);
  const Decoded d = decode(buf);
  ASSERT_EQ(d.events.size(), 1U);  // the whole first event still counts
  EXPECT_EQ(d.stats.malformed, 1U);
}

TEST(WatchDecoder, EventLengthPastTheBufferStopsDecoding) {
  const Bytes good = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  Bytes bad = good;
  poke(bad, kEventLenAt, static_cast<std::uint32_t>(bad.size() + 1));
  const Decoded d = decode(concat({good, bad}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.stats.malformed, 1U);

  poke(bad, kEventLenAt, UINT32_MAX);
  EXPECT_EQ(decode(bad).stats.malformed, 1U);
}

TEST(WatchDecoder, EventLengthBelowTheMetadataStopsDecoding) {
  for (const std::uint32_t len : {0U, 1U, 23U}) {
    Bytes bad = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
    poke(bad, kEventLenAt, len);
    const Decoded d = decode(concat({bad, bad}));
    EXPECT_TRUE(d.events.empty()) << len;
    EXPECT_EQ(d.stats.malformed, 1U) << len;
  }
}

TEST(WatchDecoder, BadMetadataLengthCostsOnlyItsEvent) {
  const Bytes good = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  for (const std::uint16_t len :
       {std::uint16_t{0}, std::uint16_t{8},
        static_cast<std::uint16_t>(good.size() + 4)}) {
    Bytes bad = good;
    poke(bad, kMetadataLenAt, len);
    const Decoded d = decode(concat({bad, good}));
    ASSERT_EQ(d.events.size(), 1U) << len;
    EXPECT_EQ(d.events[0].name, "a.bin");
    EXPECT_EQ(d.stats.malformed, 1U) << len;
  }
}

TEST(WatchDecoder, WrongMetadataVersionStopsDecoding) {
  Bytes bad = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  poke<std::uint8_t>(bad, kVersAt, FANOTIFY_METADATA_VERSION + 1);
  const Bytes good = event(FAN_OPEN, {dfid_name(kDirHandle, "b.bin")});
  const Decoded d = decode(concat({good, bad, good}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.events[0].name, "b.bin");
  EXPECT_EQ(d.stats.malformed, 1U);
}

TEST(WatchDecoder, ZeroInfoLengthDoesNotLoop) {
  Bytes bad = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  poke<std::uint16_t>(bad, kFirstRecordAt + kRecordLenAt, 0);
  const Bytes good = event(FAN_CLOSE_NOWRITE, {dfid_name(kDirHandle, "c.bin")});
  const Decoded d = decode(concat({bad, good}));
  ASSERT_EQ(d.events.size(), 1U);  // the event after it is intact
  EXPECT_EQ(d.events[0].name, "c.bin");
  EXPECT_EQ(d.stats.malformed, 1U);
  EXPECT_EQ(d.stats.events, 1U);
}

TEST(WatchDecoder, InfoLengthPastTheEventIsMalformed) {
  Bytes bad = event(FAN_OPEN, {dfid_name(kDirHandle, "a.bin")});
  const auto len = static_cast<std::uint16_t>(bad.size() - kFirstRecordAt + 4);
  poke(bad, kFirstRecordAt + kRecordLenAt, len);
  const Bytes good = event(FAN_OPEN, {dfid_name(kDirHandle, "c.bin")});
  const Decoded d = decode(concat({bad, good}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.events[0].name, "c.bin");
  EXPECT_EQ(d.stats.malformed, 1U);
}

TEST(WatchDecoder, InfoHeaderCutShortIsMalformed) {
  Bytes bad = event(FAN_OPEN, {});
  bad.insert(bad.end(), {kFanInfoFid, 0});  // half a header
  poke(bad, kEventLenAt, static_cast<std::uint32_t>(bad.size()));
  EXPECT_EQ(decode(bad).stats.malformed, 1U);
}

TEST(WatchDecoder, HandleBytesLargerThanTheRecordAreMalformed) {
  for (const std::uint32_t bytes : {9U, 4096U, UINT32_MAX}) {
    Bytes bad = event(FAN_OPEN, {fid(kFileHandle)});
    poke(bad, kFirstRecordAt + kRecordHandleBytesAt, bytes);
    const Decoded d = decode(bad);
    EXPECT_TRUE(d.events.empty()) << bytes;
    EXPECT_EQ(d.stats.malformed, 1U) << bytes;
  }
}

TEST(WatchDecoder, HandleThatSwallowsTheNameIsMalformed) {
  // handle_bytes still inside the record, but no terminated name is left.
  Bytes bad = event(FAN_OPEN, {dfid_name(kDirHandle, "abc")});
  const std::uint16_t rec_len = 4 + 8 + 8 + 8 + 4;  // "abc\0" fills it
  ASSERT_EQ(bad.size(), kFirstRecordAt + rec_len);
  poke(bad, kFirstRecordAt + kRecordHandleBytesAt, std::uint32_t{12});
  EXPECT_EQ(decode(bad).stats.malformed, 1U);
}

TEST(WatchDecoder, ZeroHandleBytesAreMalformed) {
  Bytes bad = event(FAN_OPEN, {fid(kFileHandle)});
  poke(bad, kFirstRecordAt + kRecordHandleBytesAt, std::uint32_t{0});
  EXPECT_EQ(decode(bad).stats.malformed, 1U);
}

TEST(WatchDecoder, RecordTooShortForAHandleIsMalformed) {
  Bytes bad = event(FAN_OPEN, {});
  const Bytes rec = {kFanInfoFid, 0, 12, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  bad.insert(bad.end(), rec.begin(), rec.end());
  poke(bad, kEventLenAt, static_cast<std::uint32_t>(bad.size()));
  EXPECT_EQ(decode(bad).stats.malformed, 1U);
}

TEST(WatchDecoder, UnterminatedOrEmptyNameIsMalformed) {
  Bytes unterminated = event(FAN_OPEN, {dfid_name(kDirHandle, "abc")});
  // The record ends "abc\0": overwrite the NUL (and there is no padding).
  unterminated.back() = 'd';
  EXPECT_EQ(decode(unterminated).stats.malformed, 1U);

  const Decoded empty = decode(event(FAN_OPEN, {dfid_name(kDirHandle, "")}));
  EXPECT_TRUE(empty.events.empty());
  EXPECT_EQ(empty.stats.malformed, 1U);
}

TEST(WatchDecoder, UnknownInfoTypeIsSkipped) {
  Bytes unknown = {99, 0, 12, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4};
  // A pidfd record is known to the kernel but never asked for here.
  Bytes pidfd = {4, 0, 8, 0, 5, 0, 0, 0};
  const Decoded d =
      decode(event(FAN_OPEN, {unknown, dfid_name(kDirHandle, "a.bin"), pidfd,
                              fid(kFileHandle)}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.events[0].name, "a.bin");
  EXPECT_EQ(d.events[0].object, key(kFileHandle));
  EXPECT_EQ(d.stats.unknown_info, 2U);
  EXPECT_EQ(d.stats.malformed, 0U);
}

TEST(WatchDecoder, LongHandlesAreHashedButStillTellApart) {
  Bytes nfs(64);
  for (std::size_t i = 0; i < nfs.size(); ++i) {
    nfs[i] = static_cast<std::uint8_t>(i);
  }
  Bytes other = nfs;
  other.back() ^= 1;  // differs only past the inline prefix
  const Decoded d = decode(concat({event(FAN_OPEN, {dfid_name(nfs, "a")}),
                                   event(FAN_OPEN, {dfid_name(other, "a")})}));
  ASSERT_EQ(d.events.size(), 2U);
  EXPECT_TRUE(d.events[0].dir.hashed());
  EXPECT_EQ(d.events[0].dir.size, 64);
  EXPECT_EQ(d.events[0].dir, key(nfs));
  EXPECT_NE(d.events[0].dir, d.events[1].dir);
  EXPECT_EQ(d.events[0].name, "a");
}

TEST(WatchDecoder, FsidIsPartOfTheKey) {
  const Decoded d = decode(
      event(FAN_OPEN, {record(kFanInfoDfidName, kDirHandle, "a", true, 99)}));
  ASSERT_EQ(d.events.size(), 1U);
  EXPECT_EQ(d.events[0].dir.fsid, 99U);
  EXPECT_NE(d.events[0].dir, key(kDirHandle));
  EXPECT_EQ(d.events[0].dir, key(kDirHandle, 99));
}

TEST(WatchDecoder, OutputIsReplacedAndStatsAccumulate) {
  std::vector<DecodedEvent> out;
  DecodeStats stats;
  const Bytes two = concat({event(FAN_OPEN, {dfid_name(kDirHandle, "a")}),
                            event(FAN_OPEN, {dfid_name(kDirHandle, "b")})});
  decode_events(two, out, stats);
  const Bytes one = event(FAN_OPEN, {dfid_name(kDirHandle, "c")});
  decode_events(one, out, stats);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0].name, "c");
  EXPECT_EQ(stats.events, 3U);

  DecodeStats total;
  total += stats;
  total += stats;
  EXPECT_EQ(total.events, 6U);
}

// Whatever the bytes, decoding terminates, never reads outside the buffer
// (the sanitizer builds check that) and accounts for every event.
TEST(WatchDecoder, CorruptedBuffersNeverCrash) {
  const Bytes valid = concat({
      event(FAN_CREATE, {dfid_name(kDirHandle, "x.tmp"), fid(kFileHandle)}),
      event(kFanRename, {dfid_name(kDirHandle, "x.tmp", kFanInfoOldDfidName),
                         dfid_name(kDirHandle, "x.bin", kFanInfoNewDfidName),
                         fid(kFileHandle)}),
      event(FAN_Q_OVERFLOW, {}, -1),
      event(FAN_OPEN, {dfid_name(kDirHandle, "x.bin"), fid(kFileHandle)}),
  });
  std::mt19937 rng(12345);
  std::vector<DecodedEvent> out;
  for (int round = 0; round < 20000; ++round) {
    Bytes buf = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) {
      buf[rng() % buf.size()] = static_cast<std::uint8_t>(rng());
    }
    buf.resize(rng() % (buf.size() + 1));
    // Heap-allocated to exactly its size so that an overread is caught.
    std::vector<std::uint8_t> exact(buf.begin(), buf.end());
    DecodeStats stats;
    decode_events(exact, out, stats);
    ASSERT_EQ(out.size(), stats.events);
    ASSERT_LE(stats.events, 4U);
    for (const DecodedEvent& ev : out) {
      for (const std::string_view name : {ev.name, ev.new_name}) {
        if (!name.empty()) {
          ASSERT_GE(name.data(), reinterpret_cast<const char*>(exact.data()));
          ASSERT_LE(name.data() + name.size(),
                    reinterpret_cast<const char*>(exact.data() + exact.size()));
        }
      }
    }
  }
}

}  // namespace
}  // namespace pvc
