// Decode throughput of fanotify event buffers, on one core.
//
// The buffer is what a read() of FanotifyGroup::kReadBufferBytes returns
// while vLLM loads blocks at the "dfid-name+fid" level and above: opens,
// reads and closes of "<16 hex>.bin" files in a few hundred bucket
// directories of an ext4 volume (8-byte handles of type FILEID_INO32_GEN),
// each event a DFID_NAME record and a FID record. The watcher must decode
// well above 1,000,000 events/s to drain a full 16384-event queue in
// milliseconds; "DecodeAndLookup" adds the directory-map lookup every
// event then needs.
#include <benchmark/benchmark.h>
#include <linux/fanotify.h>
#include <tsl/robin_map.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "watch/event_decoder.hpp"
#include "watch/fanotify_abi.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/handle_key.hpp"

namespace pvc {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kFsid = 0x82f482aab378cab2ULL;
constexpr std::int32_t kInoGen = 1;  // FILEID_INO32_GEN
constexpr std::uint32_t kDirs = 4096;
constexpr std::uint32_t kBucketDirs = 256;  // dirs the events land in

template <typename T>
void put(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

// ext4's handle for inode `ino`: the inode and generation numbers.
std::array<std::uint8_t, 8> ext4_handle(std::uint32_t ino) {
  std::array<std::uint8_t, 8> h{};
  const std::uint32_t gen = ino * 2654435761U;
  std::memcpy(h.data(), &ino, 4);
  std::memcpy(h.data() + 4, &gen, 4);
  return h;
}

void put_record(Bytes& out, std::uint8_t type,
                const std::array<std::uint8_t, 8>& handle, const char* name) {
  const std::size_t start = out.size();
  put<std::uint8_t>(out, type);
  put<std::uint8_t>(out, 0);
  put<std::uint16_t>(out, 0);
  put(out, kFsid);
  put(out, static_cast<std::uint32_t>(handle.size()));
  put(out, kInoGen);
  out.insert(out.end(), handle.begin(), handle.end());
  if (name != nullptr) {
    out.insert(out.end(), name, name + std::strlen(name) + 1);
  }
  while (out.size() % 4 != 0) {
    out.push_back(0);
  }
  const auto len = static_cast<std::uint16_t>(out.size() - start);
  std::memcpy(out.data() + start + 2, &len, sizeof(len));
}

// Events until the next one would not fit in a read buffer.
Bytes realistic_buffer(std::size_t& events) {
  std::mt19937_64 rng(42);
  const std::uint64_t masks[] = {FAN_OPEN, FAN_ACCESS, FAN_CLOSE_NOWRITE,
                                 FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE};
  Bytes buf;
  events = 0;
  for (;;) {
    Bytes ev;
    put<std::uint32_t>(ev, 0);
    put<std::uint8_t>(ev, FANOTIFY_METADATA_VERSION);
    put<std::uint8_t>(ev, 0);
    put<std::uint16_t>(ev, sizeof(fanotify_event_metadata));
    put<std::uint64_t>(ev, masks[rng() % 4]);
    put<std::int32_t>(ev, FAN_NOFD);
    put<std::int32_t>(ev, 1000 + static_cast<std::int32_t>(rng() % 8));
    const auto dir = static_cast<std::uint32_t>(rng() % kBucketDirs);
    char name[32];
    const std::uint64_t block = rng();
    std::snprintf(name, sizeof(name), "%016llx.bin",
                  static_cast<unsigned long long>(block));
    put_record(ev, kFanInfoDfidName, ext4_handle(100 + dir), name);
    put_record(ev, kFanInfoFid,
               ext4_handle(100000 + static_cast<std::uint32_t>(block >> 40)),
               nullptr);
    const auto len = static_cast<std::uint32_t>(ev.size());
    std::memcpy(ev.data(), &len, sizeof(len));
    if (buf.size() + ev.size() > FanotifyGroup::kReadBufferBytes) {
      return buf;
    }
    buf.insert(buf.end(), ev.begin(), ev.end());
    ++events;
  }
}

void BM_Decode(benchmark::State& state) {
  std::size_t events = 0;
  const Bytes buf = realistic_buffer(events);
  std::vector<DecodedEvent> out;
  DecodeStats stats;
  for (auto _ : state) {
    decode_events(buf, out, stats);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  if (stats.malformed != 0 || out.size() != events) {
    state.SkipWithError("the synthetic buffer did not decode cleanly");
  }
  state.SetItemsProcessed(
      static_cast<std::int64_t>(state.iterations() * events));
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * buf.size()));
  state.counters["events_per_buffer"] = static_cast<double>(events);
}
BENCHMARK(BM_Decode);

void BM_DecodeAndLookup(benchmark::State& state) {
  std::size_t events = 0;
  const Bytes buf = realistic_buffer(events);
  tsl::robin_map<HandleKey, std::uint32_t, HandleKeyHash> dirs;
  for (std::uint32_t d = 0; d < kDirs; ++d) {
    const auto h = ext4_handle(100 + d);
    dirs.emplace(HandleKey::make(kFsid, kInoGen, h.data(), h.size()), d);
  }
  std::vector<DecodedEvent> out;
  DecodeStats stats;
  std::uint64_t found = 0;
  for (auto _ : state) {
    decode_events(buf, out, stats);
    for (const DecodedEvent& ev : out) {
      const auto it = dirs.find(ev.dir);
      found += it != dirs.end() ? it->second : 0;
    }
    benchmark::DoNotOptimize(found);
  }
  state.SetItemsProcessed(
      static_cast<std::int64_t>(state.iterations() * events));
}
BENCHMARK(BM_DecodeAndLookup);

}  // namespace
}  // namespace pvc
