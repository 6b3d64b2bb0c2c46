// Decode and apply rate of fanotify events, on one core (Google Benchmark).
//
// Where decode_bench stops at the decoder, this feeds recorded buffers
// through the whole in-process path the watcher thread takes per buffer:
// decode_events(), then Watcher::apply(), which resolves each event's
// directory handle in DirHandles and moves the file to the hot end of the
// index (opens and closes also count open descriptors). The index holds
// 100,000 or 1,000,000 files in the writer's real layout
// (<model>_r0/<3 hex>/<2 hex>_g0/<16 hex>.bin, about 0.63 directories per
// file at a million), every directory's handle is known (the first crawl has
// run), and events pick files uniformly at random, which is the worst case
// for the caches: a hot set would only be faster.
//
//   BM_DecodeApply/<files>   decode + apply, items = events
//   BM_ApplyOnly/<files>     apply of already decoded events
//   BM_IndexTouch/<files>    Index::touch alone, the floor under apply
//
// Target: 1,000,000 events/s decode+apply (items_per_second is per CPU
// second of the one benchmark thread).
#include <benchmark/benchmark.h>
#include <linux/fanotify.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "index/index.hpp"
#include "layout/names.hpp"
#include "watch/dir_handles.hpp"
#include "watch/event_decoder.hpp"
#include "watch/fanotify_abi.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/handle_key.hpp"
#include "watch/watcher.hpp"

namespace pvc {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kFsid = 0x82f482aab378cab2ULL;
constexpr std::int32_t kInoGen = 1;   // FILEID_INO32_GEN, ext4
constexpr std::size_t kBuffers = 64;  // ~40,000 events, cycled
constexpr TimeNs kHour = 3600 * kNsPerSecond;

std::uint64_t splitmix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27U)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31U);
}

std::array<std::uint8_t, 8> ext4_handle(std::uint32_t ino) {
  std::array<std::uint8_t, 8> h{};
  const std::uint32_t gen = ino * 2654435761U;
  std::memcpy(h.data(), &ino, 4);
  std::memcpy(h.data() + 4, &gen, 4);
  return h;
}

HandleKey dir_key(DirId dir) {
  const auto h = ext4_handle(1000 + dir);
  return HandleKey::make(kFsid, kInoGen, h.data(), h.size());
}

template <typename T>
void put(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
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

struct File {
  DirId dir;
  FileId id;
  std::uint64_t hash;
};

// An index in the real layout plus recorded event buffers about its files.
struct World {
  SharedIndex index;
  DirHandles handles;
  std::vector<File> files;
  std::vector<Bytes> buffers;
  std::vector<std::size_t> buffer_events;
  std::size_t dirs = 0;

  explicit World(std::size_t count) {
    const TimeNs now = SystemClock().now();
    index.with([&](Index& ix) {
      const DirId model = ix.add_dir(ix.root(), "org_model-0_0123456789ab_r0");
      handles.put(dir_key(model), model);
      std::map<std::uint32_t, DirId> first;   // 12-bit bucket -> dir
      std::map<std::uint32_t, DirId> second;  // 20-bit prefix -> dir
      files.reserve(count);
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint64_t hash = splitmix(i);
        char name[32];
        std::snprintf(name, sizeof name, "%016llx.bin",
                      static_cast<unsigned long long>(hash));
        const auto b1 = static_cast<std::uint32_t>(hash >> 52U);
        const auto b2 = static_cast<std::uint32_t>(hash >> 44U);
        auto [it1, new1] = first.try_emplace(b1, kNoId);
        if (new1) {
          char d[8];
          std::snprintf(d, sizeof d, "%03x", b1);
          it1->second = ix.add_dir(model, d);
          handles.put(dir_key(it1->second), it1->second);
        }
        auto [it2, new2] = second.try_emplace(b2, kNoId);
        if (new2) {
          char d[16];
          std::snprintf(d, sizeof d, "%02x_g0", b2 & 0xffU);
          it2->second = ix.add_dir(it1->second, d);
          handles.put(dir_key(it2->second), it2->second);
        }
        FileObservation seen;
        seen.ino = 10'000'000 + i;
        seen.bytes = 1 << 20;
        // Ages spread over two hours, like a cache that has been in use.
        seen.atime =
            now - 2 * kHour + static_cast<TimeNs>(splitmix(~i) % (2 * kHour));
        seen.mtime = seen.atime;
        const FileId id = ix.observe(it2->second, name, FileKind::kBlock, seen,
                                     MergePolicy::kLaterOfBoth, now);
        files.push_back({it2->second, id, hash});
      }
      dirs = first.size() + second.size() + 1;
      ix.stats();  // settle the age order, as the first victim query would
    });
    record_buffers();
  }

  // Opens, reads and closes of random files, as a read() of the group's
  // buffer size returns them; one event in four is a merged
  // open+read+close, as the kernel merges events waiting together.
  void record_buffers() {
    std::mt19937_64 rng(42);
    const std::uint64_t masks[] = {FAN_OPEN, FAN_ACCESS, FAN_CLOSE_NOWRITE,
                                   FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE};
    for (std::size_t b = 0; b < kBuffers; ++b) {
      Bytes buf;
      std::size_t events = 0;
      for (;;) {
        const File& f = files[rng() % files.size()];
        Bytes ev;
        put<std::uint32_t>(ev, 0);
        put<std::uint8_t>(ev, FANOTIFY_METADATA_VERSION);
        put<std::uint8_t>(ev, 0);
        put<std::uint16_t>(ev, sizeof(fanotify_event_metadata));
        put<std::uint64_t>(ev, masks[rng() % 4]);
        put<std::int32_t>(ev, FAN_NOFD);
        put<std::int32_t>(ev, 1 + static_cast<std::int32_t>(rng() % 8));
        char name[32];
        std::snprintf(name, sizeof name, "%016llx.bin",
                      static_cast<unsigned long long>(f.hash));
        put_record(ev, kFanInfoDfidName, ext4_handle(1000 + f.dir), name);
        put_record(ev, kFanInfoFid,
                   ext4_handle(static_cast<std::uint32_t>(10'000'000 + f.id)),
                   nullptr);
        const auto len = static_cast<std::uint32_t>(ev.size());
        std::memcpy(ev.data(), &len, sizeof(len));
        if (buf.size() + ev.size() > FanotifyGroup::kReadBufferBytes) {
          break;
        }
        buf.insert(buf.end(), ev.begin(), ev.end());
        ++events;
      }
      buffers.push_back(std::move(buf));
      buffer_events.push_back(events);
    }
  }
};

World& world(std::size_t files) {
  static std::map<std::size_t, std::unique_ptr<World>> worlds;
  auto& w = worlds[files];
  if (!w) {
    w = std::make_unique<World>(files);
  }
  return *w;
}

void BM_DecodeApply(benchmark::State& state) {
  World& w = world(static_cast<std::size_t>(state.range(0)));
  FanotifyGroup group;  // never read: apply() only needs the reference
  SystemClock clock;
  Watcher watcher(group, w.index, w.handles, clock);
  std::vector<DecodedEvent> out;
  DecodeStats stats;
  std::size_t b = 0;
  std::uint64_t events = 0;
  const std::uint64_t applied0 = watcher.counters().applied.load();
  for (auto _ : state) {
    decode_events(w.buffers[b], out, stats);
    watcher.apply(out);
    events += out.size();
    b = (b + 1) % w.buffers.size();
  }
  const std::uint64_t applied = watcher.counters().applied.load() - applied0;
  if (stats.malformed != 0 || watcher.counters().unresolved.load() != 0 ||
      applied != events) {
    state.SkipWithError("recorded events did not all decode and apply");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.counters["files"] = static_cast<double>(w.files.size());
  state.counters["dirs"] = static_cast<double>(w.dirs);
  state.counters["events_per_buffer"] =
      static_cast<double>(events) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_DecodeApply)->Arg(100'000)->Arg(1'000'000);

void BM_ApplyOnly(benchmark::State& state) {
  World& w = world(static_cast<std::size_t>(state.range(0)));
  FanotifyGroup group;
  SystemClock clock;
  Watcher watcher(group, w.index, w.handles, clock);
  std::vector<std::vector<DecodedEvent>> decoded(w.buffers.size());
  DecodeStats stats;
  for (std::size_t i = 0; i < w.buffers.size(); ++i) {
    decode_events(w.buffers[i], decoded[i], stats);
  }
  std::size_t b = 0;
  std::uint64_t events = 0;
  for (auto _ : state) {
    watcher.apply(decoded[b]);
    events += decoded[b].size();
    b = (b + 1) % decoded.size();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
}
BENCHMARK(BM_ApplyOnly)->Arg(100'000)->Arg(1'000'000);

void BM_IndexTouch(benchmark::State& state) {
  World& w = world(static_cast<std::size_t>(state.range(0)));
  std::mt19937_64 rng(7);
  std::vector<FileId> order(1 << 16);
  for (FileId& id : order) {
    id = w.files[rng() % w.files.size()].id;
  }
  SystemClock clock;
  std::size_t k = 0;
  for (auto _ : state) {
    const TimeNs now = clock.now();
    w.index.with([&](Index& ix) {
      for (std::size_t i = 0; i < 1024; ++i) {
        ix.touch(order[(k + i) & (order.size() - 1)], now);
      }
    });
    k += 1024;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * 1024));
}
BENCHMARK(BM_IndexTouch)->Arg(100'000)->Arg(1'000'000);

}  // namespace
}  // namespace pvc
