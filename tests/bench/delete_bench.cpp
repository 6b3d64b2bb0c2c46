// Unlink rate of one deletion episode, re-checks included.
//
//   delete_bench --root R --count N [--crawlers 8] [--batch-size 100]
//                [--hot-minutes 60]
//
// Crawls R into a fresh index (not timed), then runs one real
// pvc::Evictor::step(): an episode that selects the coldest files in
// batches, re-checks each victim with pvc::Deleter (resolve its directory
// beneath the root, fstatat: same inode, regular file, still cold; open it
// and take a write lease: nobody has it open; unlinkat while holding the
// lease), updates the index and re-reads usage after every batch, until the
// N oldest files are gone. Only the episode is timed.
//
// Usage is simulated so that the episode is sized to exactly N files: each
// indexed file counts 1 MiB against a capacity at which the whole tree is
// 90 % (cleanup 85 %), and the target is where N fewer files would be. The
// simulated reading also does the statvfs() the real one does. Bucket
// directory removal is off: the daemon does it after a grace period
// (120 s), not inside the episode, and `find -delete` of files does not
// remove directories either.
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "bench_util.hpp"
#include "common/clock.hpp"
#include "crawl/crawler.hpp"
#include "evict/deleter.hpp"
#include "evict/evictor.hpp"
#include "fs/cache_root.hpp"
#include "index/index.hpp"
#include "usage/usage.hpp"

namespace {

constexpr std::uint64_t kUnit = 1 << 20;

class IndexUsage final : public pvc::UsageSource {
 public:
  IndexUsage(pvc::SharedIndex& index, std::string path, std::uint64_t capacity)
      : index_(index), path_(std::move(path)), capacity_(capacity) {}
  pvc::UsageReading read() const override {
    pvc::UsageReading r;
    struct statvfs st {};
    if (::statvfs(path_.c_str(), &st) != 0) {
      r.error = errno;
      return r;
    }
    const std::uint64_t files =
        index_.with([](pvc::Index& i) { return i.file_count(); });
    r.usage.used_bytes = files * kUnit;
    r.usage.capacity_bytes = capacity_;
    r.usage.used_inodes = st.f_files - st.f_ffree;
    r.usage.total_inodes = st.f_files;
    return r;
  }
  bool budgeted() const override { return false; }
  const std::string& path() const override { return path_; }

 private:
  pvc::SharedIndex& index_;
  std::string path_;
  std::uint64_t capacity_;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace pvc;
  using namespace pvc::bench;
  const Args args(
      argc, argv,
      {"--root", "--count", "--crawlers", "--batch-size", "--hot-minutes"}, {});
  const std::string root_path = args.str("--root");
  const std::uint64_t count = args.num("--count", 0);
  if (root_path.empty() || count == 0) {
    std::fprintf(stderr,
                 "usage: delete_bench --root R --count N [--crawlers 8] "
                 "[--batch-size 100] [--hot-minutes 60]\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  int err = 0;
  const CacheRoot root = CacheRoot::open(root_path, err);
  if (!root.valid()) {
    std::fprintf(stderr, "delete_bench: cannot open %s: errno %d\n",
                 root_path.c_str(), err);
    return 1;
  }
  SystemClock clock;
  std::atomic<bool> stop{false};
  SharedIndex index;
  CrawlOptions options;
  options.crawlers = static_cast<unsigned>(args.num("--crawlers", 8));
  Crawler crawler(index, clock, options, stop);
  const CrawlStats crawl = crawler.run(root);
  const std::uint64_t files =
      index.with([](Index& i) { return i.stats().files; });
  if (!crawl.complete || files < count) {
    std::fprintf(stderr, "delete_bench: crawl found %llu files, need %llu\n",
                 static_cast<unsigned long long>(files),
                 static_cast<unsigned long long>(count));
    return 1;
  }

  const double capacity = static_cast<double>(files * kUnit) / 0.90;
  EvictorConfig config;
  config.thresholds.cleanup = 0.85;
  config.thresholds.target =
      (static_cast<double>((files - count) * kUnit) + 0.5 * kUnit) / capacity;
  config.thresholds.inode_cleanup = 0;  // off
  config.thresholds.emergency = 1.0;
  config.hot_window = seconds_to_ns(args.real("--hot-minutes", 60) * 60);
  config.batch_size = args.num("--batch-size", 100);
  config.dir_cleanup = false;
  config.temp_max_age = 0;
  IndexUsage usage(index, root_path, static_cast<std::uint64_t>(capacity));
  Deleter deleter(root, DryRun::kNo);
  Evictor evictor(config, index, usage, deleter, clock, stop);
  evictor.crawl_finished(true);

  const CpuTimes cpu0 = cpu_now();
  const double t0 = wall_now();
  evictor.step();
  const double t1 = wall_now();
  const CpuTimes cpu1 = cpu_now();

  const EvictorTotals totals = evictor.totals();
  const std::uint64_t deleted =
      totals.files_deleted[static_cast<int>(DeleteReason::kAge)];
  std::uint64_t errors = 0;
  for (const auto& [e, n] : totals.errors_by_errno) {
    errors += n;
  }
  const double seconds = t1 - t0;
  const double cpu = cpu1.total() - cpu0.total();
  Json j;
  j.str("bench", "delete")
      .str("root", root_path)
      .integer("files_before", files)
      .integer("count", count)
      .integer("deleted", deleted)
      .integer("skipped_hot", totals.skipped_hot)
      .integer("skipped_open", totals.skipped_open)
      .integer("skipped_changed", totals.skipped_changed)
      .integer("vanished", totals.vanished)
      .integer("errors", errors)
      .boolean("leases", deleter.leases_work())
      .integer("batch_size", config.batch_size)
      .num("seconds", seconds)
      .num("unlinks_per_s",
           seconds > 0 ? static_cast<double>(deleted) / seconds : 0)
      .num("cpu_s", cpu)
      .num("cpu_user_s", cpu1.user - cpu0.user)
      .num("cpu_sys_s", cpu1.sys - cpu0.sys)
      .num("cpu_us_per_unlink",
           deleted ? cpu * 1e6 / static_cast<double>(deleted) : 0)
      .num("crawl_seconds", crawl.seconds);
  std::printf("%s\n", j.done().c_str());
  // Sparse files free no bytes, so batches are always full: with a count
  // that is not a multiple of the batch size the last batch goes past it.
  return deleted >= count ? 0 : 1;
}
