// Crawl throughput, CPU per file and index memory of pvc::Crawler.
//
//   crawl_bench --root R [--crawlers N] [--policy crawl|watch] [--handles]
//               [--rescans K]
//
// Opens R as the daemon opens its cache root, runs one crawl into a fresh
// index (the daemon's start-up crawl) and then K more into the same index
// (its periodic rescans), and prints one JSON object:
//
//   files, dirs, seconds, files_per_s       the first crawl, wall clock
//   cpu_s, cpu_us_per_file                  its user+system CPU, all threads
//   index_memory_bytes, index_bytes_per_file   what Index::stats() accounts
//   rss_delta_bytes, rss_bytes_per_file     resident growth over the crawl
//   dir_handles                             with --handles (watch mode):
//                                           directories whose handle is kept
//   rescan_seconds, rescan_cpu_s, ...       the mean of the K rescans
//
// --handles records every directory's file handle the way watch mode does
// (DirHandles, name_to_handle_at per directory). Whether the page cache is
// warm or cold is the caller's business (scripts/bench.sh drops caches).
#include <atomic>
#include <cstdio>
#include <string>

#include "bench_util.hpp"
#include "common/clock.hpp"
#include "crawl/crawler.hpp"
#include "crawl/partition.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"
#include "watch/dir_handles.hpp"
#include "watch/handle_key.hpp"

int main(int argc, char** argv) {
  using namespace pvc;
  using namespace pvc::bench;
  const Args args(argc, argv, {"--root", "--crawlers", "--policy", "--rescans"},
                  {"--handles"});
  const std::string root_path = args.str("--root");
  const auto crawlers = static_cast<unsigned>(args.num("--crawlers", 8));
  const std::uint64_t rescans = args.num("--rescans", 0);
  const bool watch_policy = args.str("--policy", "crawl") == "watch";
  const bool handles = args.has("--handles");
  if (root_path.empty() || !valid_crawler_count(crawlers)) {
    std::fprintf(stderr,
                 "usage: crawl_bench --root R [--crawlers 1|2|4|8|16] "
                 "[--policy crawl|watch] [--handles] [--rescans K]\n");
    return 2;
  }

  int err = 0;
  const CacheRoot root = CacheRoot::open(root_path, err);
  if (!root.valid()) {
    std::fprintf(stderr, "crawl_bench: cannot open %s: errno %d\n",
                 root_path.c_str(), err);
    return 1;
  }

  const std::uint64_t rss0 = rss_bytes();
  SystemClock clock;
  std::atomic<bool> stop{false};
  auto* index = new SharedIndex();  // leaked on purpose: exit frees it
  auto* dir_handles = new DirHandles();
  CrawlOptions options;
  options.crawlers = crawlers;
  options.policy =
      watch_policy ? MergePolicy::kLaterOfBoth : MergePolicy::kStatIsTruth;
  std::atomic<std::uint64_t> handle_errors{0};
  if (handles) {
    const std::uint64_t fsid = fsid_of(root.fd(), err);
    options.on_dir = [dir_handles, fsid, &handle_errors](int fd, DirId dir) {
      int e = 0;
      const HandleKey key = handle_of_dir(fd, fsid, e);
      if (key.valid()) {
        dir_handles->put(key, dir);
      } else {
        handle_errors.fetch_add(1, std::memory_order_relaxed);
      }
    };
  }
  Crawler crawler(*index, clock, options, stop);

  const CpuTimes cpu0 = cpu_now();
  const double t0 = wall_now();
  const CrawlStats first = crawler.run(root);
  const double t1 = wall_now();
  const CpuTimes cpu1 = cpu_now();
  const IndexStats stats = index->with([](Index& i) { return i.stats(); });
  const std::uint64_t rss1 = rss_bytes();

  double rescan_wall = 0;
  double rescan_cpu = 0;
  for (std::uint64_t r = 0; r < rescans; ++r) {
    const CpuTimes c0 = cpu_now();
    const double w0 = wall_now();
    crawler.run(root);
    // The daemon settles the merged generation when it next selects.
    index->with([](Index& i) { return i.stats(); });
    rescan_wall += wall_now() - w0;
    rescan_cpu += cpu_now().total() - c0.total();
  }
  const std::uint64_t rss2 = rss_bytes();

  const double files = static_cast<double>(first.files);
  const double per = files > 0 ? 1.0 / files : 0.0;
  const double seconds = t1 - t0;
  const double cpu = cpu1.total() - cpu0.total();
  const auto n_rescans = static_cast<double>(rescans);
  Json j;
  j.str("bench", "crawl")
      .str("root", root_path)
      .integer("crawlers", crawlers)
      .str("policy", watch_policy ? "watch" : "crawl")
      .boolean("handles", handles)
      .integer("files", first.files)
      .integer("dirs", first.dirs)
      .boolean("complete", first.complete)
      .integer("errors", first.errors + first.vanished + handle_errors.load())
      .num("seconds", seconds)
      .num("files_per_s", seconds > 0 ? files / seconds : 0)
      .num("cpu_s", cpu)
      .num("cpu_user_s", cpu1.user - cpu0.user)
      .num("cpu_sys_s", cpu1.sys - cpu0.sys)
      .num("cpu_us_per_file", cpu * 1e6 * per)
      .integer("index_files", stats.files)
      .integer("index_dirs", stats.dirs)
      .integer("index_memory_bytes", stats.memory_bytes)
      .num("index_bytes_per_file",
           static_cast<double>(stats.memory_bytes) * per)
      .integer("dir_handles", dir_handles->size())
      .integer("rss_before_bytes", rss0)
      .integer("rss_after_bytes", rss1)
      .num("rss_delta_bytes", static_cast<double>(rss1 - rss0))
      .num("rss_bytes_per_file", static_cast<double>(rss1 - rss0) * per)
      .integer("rescans", rescans)
      .num("rescan_seconds", rescans ? rescan_wall / n_rescans : 0)
      .num("rescan_cpu_s", rescans ? rescan_cpu / n_rescans : 0)
      .num("rescan_cpu_us_per_file",
           rescans ? rescan_cpu / n_rescans * 1e6 * per : 0)
      .num("rss_after_rescans_bytes", static_cast<double>(rss2));
  std::printf("%s\n", j.done().c_str());
  return first.complete ? 0 : 1;
}
