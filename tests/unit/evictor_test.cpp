// One evictor step at a time against a real directory tree, with the
// byte budget standing in for a volume so that usage is exact.
#include "evict/evictor.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "crawl/crawler.hpp"
#include "fs/cache_root.hpp"

namespace pvc {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kFileBytes = 64 * 1024;

class EvictorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvc-evictor-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_path_ = dir_ / "kv";
    fs::create_directories(root_path_ / "llama_0123456789ab");
    std::ofstream(root_path_ / "llama_0123456789ab" / "config.json")
        << R"({"model_name": "meta/llama"})";
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes a block `age_s` seconds old and returns its path.
  fs::path write(const std::string& rel, int age_s) {
    const fs::path p = root_path_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << std::string(kFileBytes, 'x');
    set_age(p, age_s);
    return p;
  }
  void set_age(const fs::path& p, int age_s) {
    const timespec t{clock_.now() / kNsPerSecond - age_s, 0};
    const timespec times[2] = {t, t};
    ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  }
  static std::string block(int i) {
    char name[64];
    std::snprintf(name, sizeof name,
                  "llama_0123456789ab_r0/%03x/%02x_g0/%016x.bin", i & 0xfff,
                  i & 0xff, i);
    return name;
  }

  void crawl() {
    int err = 0;
    root_ = CacheRoot::open(root_path_, err);
    ASSERT_EQ(err, 0);
    Crawler crawler(index_, clock_, CrawlOptions{}, stop_);
    ASSERT_TRUE(crawler.run(root_).complete);
  }

  std::uint64_t cache_bytes() {
    return index_.with([](Index& i) { return i.total_bytes(); });
  }

  std::unique_ptr<Evictor> make(std::uint64_t budget, EvictorConfig cfg,
                                DryRun dry = DryRun::kNo) {
    usage_ = std::make_unique<UsageMonitor>(dir_, budget,
                                            [this] { return cache_bytes(); });
    deleter_ = std::make_unique<Deleter>(root_, dry);
    return std::make_unique<Evictor>(cfg, index_, *usage_, *deleter_, clock_,
                                     stop_);
  }

  fs::path dir_;
  fs::path root_path_;
  SystemClock clock_;
  std::atomic<bool> stop_{false};
  SharedIndex index_;
  CacheRoot root_;
  std::unique_ptr<UsageMonitor> usage_;
  std::unique_ptr<Deleter> deleter_;
};

TEST_F(EvictorTest, DeletesOldestFirstDownToTargetAndKeepsHotFiles) {
  for (int i = 0; i < 40; ++i) {
    write(block(i), 7200 + 60 * i);  // block(39) is the oldest
  }
  for (int i = 40; i < 50; ++i) {
    write(block(i), 5);  // hot
  }
  crawl();
  const std::uint64_t total = cache_bytes();
  const std::uint64_t budget = total * 100 / 90;  // 90 % full
  EvictorConfig cfg;
  cfg.hot_window = 600 * kNsPerSecond;
  cfg.batch_size = 3;  // several batches, each followed by a usage read
  auto evictor = make(budget, cfg);
  evictor->step();

  const double ratio =
      static_cast<double>(cache_bytes()) / static_cast<double>(budget);
  EXPECT_LE(ratio, 0.70);
  EXPECT_GT(ratio, 0.70 - 1.5 * kFileBytes / static_cast<double>(budget));
  int deleted = 0;
  for (int i = 0; i < 50; ++i) {
    if (!fs::exists(root_path_ / block(i))) {
      ++deleted;
      EXPECT_LT(i, 40) << "a hot file was deleted";
    }
  }
  // The deleted ones are exactly the oldest.
  for (int i = 39; i > 39 - deleted; --i) {
    EXPECT_FALSE(fs::exists(root_path_ / block(i))) << i;
  }
  const EvictorTotals t = evictor->totals();
  EXPECT_EQ(t.episodes, 1U);
  EXPECT_EQ(t.files_deleted[0], static_cast<std::uint64_t>(deleted));
  EXPECT_FALSE(t.episode_active);
  EXPECT_TRUE(fs::exists(root_path_ / "llama_0123456789ab" / "config.json"));
}

TEST_F(EvictorTest, RecheckKeepsAFileUsedSinceTheCrawl) {
  for (int i = 0; i < 10; ++i) {
    write(block(i), 7200 + i);
  }
  crawl();
  set_age(root_path_ / block(9), 1);  // the oldest was just used
  EvictorConfig cfg;
  cfg.hot_window = 600 * kNsPerSecond;
  auto evictor = make(cache_bytes() * 100 / 90, cfg);
  evictor->step();
  EXPECT_TRUE(fs::exists(root_path_ / block(9)));
  EXPECT_EQ(evictor->totals().skipped_hot, 1U);
  EXPECT_FALSE(fs::exists(root_path_ / block(8)));
}

TEST_F(EvictorTest, DryRunDeletesNothingButEndsTheEpisode) {
  for (int i = 0; i < 20; ++i) {
    write(block(i), 7200 + i);
  }
  crawl();
  auto evictor = make(cache_bytes() * 100 / 90, EvictorConfig{}, DryRun::kYes);
  evictor->step();
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(fs::exists(root_path_ / block(i)));
  }
  const EvictorTotals t = evictor->totals();
  EXPECT_GT(t.files_deleted[0], 0U);
  EXPECT_FALSE(t.episode_active);
}

TEST_F(EvictorTest, OrphanTempsGoAndOtherFilesStay) {
  const fs::path bucket = root_path_ / "llama_0123456789ab_r0/abc/de_g0";
  const fs::path orphan = write(
      "llama_0123456789ab_r0/abc/de_g0/0123456789abcdef.bin_123.tmp", 7200);
  const fs::path live =
      write("llama_0123456789ab_r0/abc/de_g0/0123456789abcdee.bin_9.tmp", 1);
  const fs::path notes =
      write("llama_0123456789ab_r0/abc/de_g0/notes.tmp", 7200);
  crawl();
  auto evictor = make(1ULL << 40U, EvictorConfig{});  // no pressure
  evictor->step();
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(notes));
  EXPECT_EQ(evictor->totals().files_deleted[2], 1U);
}

TEST_F(EvictorTest, EmptiedBucketsAreRemovedButNotModelDirectories) {
  for (int i = 0; i < 8; ++i) {
    write(block(i * 0x111), 7200 + i);
  }
  crawl();
  EvictorConfig cfg;
  cfg.dir_grace = 0;
  cfg.thresholds.target = 0.01;  // delete everything cold
  auto evictor = make(cache_bytes(), cfg);
  // Each step removes one more level of emptied directories.
  for (int i = 0; i < 4; ++i) {
    evictor->step();
  }
  EXPECT_EQ(cache_bytes(), 0U);
  const fs::path rank = root_path_ / "llama_0123456789ab_r0";
  EXPECT_TRUE(fs::exists(rank));
  EXPECT_TRUE(fs::is_empty(rank)) << "bucket directories left behind";
  EXPECT_TRUE(fs::exists(root_path_ / "llama_0123456789ab" / "config.json"));
  EXPECT_GE(evictor->totals().dirs_removed, 16U);
}

TEST_F(EvictorTest, AFailingFileIsSkippedAndTheEpisodeGoesOn) {
  for (int i = 0; i < 10; ++i) {
    write(block(i), 7200 + i);
  }
  crawl();
  // Replace the oldest block's directory with one the deleter cannot
  // resolve beneath the root: a symbolic link.
  const fs::path bucket = (root_path_ / block(9)).parent_path();
  fs::rename(bucket, dir_ / "moved");
  fs::create_directory_symlink(dir_ / "moved", bucket);
  EvictorConfig cfg;
  cfg.hot_window = 600 * kNsPerSecond;
  auto evictor = make(cache_bytes() * 100 / 90, cfg);
  evictor->step();
  EXPECT_TRUE(fs::exists(dir_ / "moved" / fs::path(block(9)).filename()))
      << "followed a link out of the tree";
  const EvictorTotals t = evictor->totals();
  EXPECT_EQ(t.errors_by_errno.size(), 1U);
  EXPECT_FALSE(t.episode_active) << "one failing file stopped the episode";
}

TEST_F(EvictorTest, FilesOpenOrMappedRightNowAreNeverUnlinked) {
  for (int i = 0; i < 10; ++i) {
    write(block(i), 7200 + i);
  }
  crawl();
  // The two oldest: one held open, one mapped after its descriptor was
  // closed. Neither has a recent atime; only the kernel knows.
  const UniqueFd held(::open((root_path_ / block(9)).c_str(), O_RDONLY));
  ASSERT_TRUE(held);
  void* map = nullptr;
  {
    const UniqueFd fd(::open((root_path_ / block(8)).c_str(), O_RDONLY));
    map = ::mmap(nullptr, kFileBytes, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(map, MAP_FAILED);
  }
  // mmap() itself counts as an access; make the atime old again so that
  // only the open-file check can save the file.
  set_age(root_path_ / block(8), 7200 + 8);
  EvictorConfig cfg;
  cfg.hot_window = 600 * kNsPerSecond;
  auto evictor = make(cache_bytes() * 100 / 90, cfg);
  evictor->step();
  EXPECT_TRUE(fs::exists(root_path_ / block(9)));
  EXPECT_TRUE(fs::exists(root_path_ / block(8)));
  EXPECT_EQ(evictor->totals().skipped_open, 2U);
  EXPECT_FALSE(fs::exists(root_path_ / block(7)));
  EXPECT_FALSE(evictor->totals().episode_active);
  ::munmap(map, kFileBytes);
}

}  // namespace
}  // namespace pvc
