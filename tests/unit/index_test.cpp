#include "index/index.hpp"

#include <gtest/gtest.h>

#include <random>

namespace pvc {
namespace {

constexpr TimeNs kNow = 1'000'000 * kNsPerSecond;

FileObservation seen(std::uint64_t ino, TimeNs used,
                     std::uint64_t bytes = 4096) {
  return FileObservation{ino, bytes, used, used};
}

std::vector<std::string> names(const std::vector<FileSnapshot>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) {
    out.push_back(f.name);
  }
  return out;
}

VictimQuery everything_before(TimeNs cold_before) {
  VictimQuery q;
  q.now = kNow;
  q.cold_before = cold_before;
  q.max_files = 1000;
  q.max_bytes = UINT64_MAX;
  return q;
}

TEST(Index, ColdestComeFirstWhateverTheInsertOrder) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m_r0");
  std::vector<int> ages(200);
  std::iota(ages.begin(), ages.end(), 0);
  std::shuffle(ages.begin(), ages.end(), std::mt19937(7));
  for (const int age : ages) {
    index.observe(
        d, block_name(static_cast<std::uint64_t>(age)), FileKind::kBlock,
        seen(static_cast<std::uint64_t>(age) + 1, kNow - age * kNsPerSecond),
        MergePolicy::kStatIsTruth, kNow);
  }
  const auto order = index.coldest(500);
  ASSERT_EQ(order.size(), 200U);
  for (std::size_t i = 1; i < order.size(); ++i) {
    EXPECT_LE(order[i - 1].last_use, order[i].last_use);
  }
  EXPECT_EQ(order.front().name, block_name(199));
  EXPECT_EQ(order.back().name, block_name(0));
}

TEST(Index, TouchMovesAFileToTheHotEnd) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  const FileId a = index.observe(d, "a.bin", FileKind::kBlock,
                                 seen(1, kNow - 300 * kNsPerSecond),
                                 MergePolicy::kStatIsTruth, kNow);
  index.observe(d, "b.bin", FileKind::kBlock,
                seen(2, kNow - 200 * kNsPerSecond), MergePolicy::kStatIsTruth,
                kNow);
  ASSERT_EQ(index.coldest(1).front().name, "a.bin");
  index.touch(a, kNow);
  EXPECT_EQ(names(index.coldest(2)),
            (std::vector<std::string>{"b.bin", "a.bin"}));
  EXPECT_EQ(index.snapshot(a).source, UseSource::kEvent);
}

TEST(Index, VictimsStopAtTheFirstHotFileAndSkipOpenOnes) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  const FileId open = index.observe(d, "open.bin", FileKind::kBlock,
                                    seen(1, kNow - 500 * kNsPerSecond),
                                    MergePolicy::kStatIsTruth, kNow);
  index.observe(d, "old.bin", FileKind::kBlock,
                seen(2, kNow - 400 * kNsPerSecond), MergePolicy::kStatIsTruth,
                kNow);
  index.observe(d, "hot.bin", FileKind::kBlock,
                seen(3, kNow - 10 * kNsPerSecond), MergePolicy::kStatIsTruth,
                kNow);
  index.open_file(open, kNow - 500 * kNsPerSecond);
  // open_file counts as a use: put it back at the cold end for the test.
  index.observe(d, "open.bin", FileKind::kBlock,
                seen(1, kNow - 600 * kNsPerSecond), MergePolicy::kStatIsTruth,
                kNow);

  VictimSkips skips;
  const auto victims =
      index.select_victims(everything_before(kNow - 60 * kNsPerSecond), skips);
  EXPECT_EQ(names(victims), std::vector<std::string>{"old.bin"});
  EXPECT_EQ(skips.open, 1U);
  EXPECT_EQ(skips.hot, 1U);
}

TEST(Index, VictimSelectionIsSizedByBytes) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  for (int i = 0; i < 10; ++i) {
    index.observe(d, block_name(static_cast<std::uint64_t>(i)),
                  FileKind::kBlock,
                  seen(static_cast<std::uint64_t>(i) + 1,
                       kNow - (100 - i) * kNsPerSecond, 1 << 20),
                  MergePolicy::kStatIsTruth, kNow);
  }
  VictimQuery q = everything_before(kNow);
  q.max_bytes = 3 * (1 << 20) - 1;  // needs three files
  VictimSkips skips;
  EXPECT_EQ(index.select_victims(q, skips).size(), 3U);
}

TEST(Index, DeferredFilesAreSkippedUntilTheirRetryTime) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  const FileId f = index.observe(d, "a.bin", FileKind::kBlock,
                                 seen(1, kNow - 100 * kNsPerSecond),
                                 MergePolicy::kStatIsTruth, kNow);
  index.defer_file(f, kNow + kNsPerSecond);
  VictimSkips skips;
  EXPECT_TRUE(index.select_victims(everything_before(kNow), skips).empty());
  EXPECT_EQ(skips.backoff, 1U);
  VictimQuery later = everything_before(kNow);
  later.now = kNow + 2 * kNsPerSecond;
  EXPECT_EQ(index.select_victims(later, skips).size(), 1U);
}

TEST(Index, MergePoliciesAndReplacedFiles) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  const TimeNs old = kNow - 1000 * kNsPerSecond;
  const TimeNs older = kNow - 2000 * kNsPerSecond;
  const FileId f = index.observe(d, "a.bin", FileKind::kBlock, seen(1, old),
                                 MergePolicy::kStatIsTruth, kNow);
  // Crawl mode: the newest stat is the truth, even when it moves back.
  index.observe(d, "a.bin", FileKind::kBlock, seen(1, older),
                MergePolicy::kStatIsTruth, kNow);
  EXPECT_EQ(index.snapshot(f).last_use, older);
  // Watch mode: the later of the record and the stat.
  index.observe(d, "a.bin", FileKind::kBlock, seen(1, old),
                MergePolicy::kLaterOfBoth, kNow);
  index.observe(d, "a.bin", FileKind::kBlock, seen(1, older),
                MergePolicy::kLaterOfBoth, kNow);
  EXPECT_EQ(index.snapshot(f).last_use, old);
  // A new inode under the same name is a new file.
  index.observe(d, "a.bin", FileKind::kBlock, seen(2, older),
                MergePolicy::kLaterOfBoth, kNow);
  EXPECT_EQ(index.snapshot(f).ino, 2U);
  EXPECT_EQ(index.snapshot(f).last_use, older);
  EXPECT_EQ(index.file_count(), 1U);
}

TEST(Index, FutureTimestampsAreCappedAtFirstSight) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  const TimeNs future = kNow + 3600 * kNsPerSecond;
  const FileId f = index.observe(d, "a.bin", FileKind::kBlock, seen(1, future),
                                 MergePolicy::kStatIsTruth, kNow);
  EXPECT_EQ(index.snapshot(f).last_use, kNow);
  // Seen again later with the same future stamp: it keeps ageing from the
  // first sighting instead of staying hot for ever.
  index.observe(d, "a.bin", FileKind::kBlock, seen(1, future),
                MergePolicy::kStatIsTruth, kNow + 1800 * kNsPerSecond);
  EXPECT_EQ(index.snapshot(f).last_use, kNow);
}

TEST(Index, CompleteCrawlDropsWhatItDidNotSee) {
  Index index;
  const DirId m = index.add_dir(index.root(), "m");
  const DirId b = index.add_dir(m, "abc");
  index.observe(b, "a.bin", FileKind::kBlock, seen(1, kNow),
                MergePolicy::kStatIsTruth, kNow);
  index.observe(m, "b.bin", FileKind::kBlock, seen(2, kNow),
                MergePolicy::kStatIsTruth, kNow);
  index.begin_crawl();
  index.add_dir(index.root(), "m");
  index.observe(m, "b.bin", FileKind::kBlock, seen(2, kNow),
                MergePolicy::kStatIsTruth, kNow);
  EXPECT_EQ(index.end_crawl(false), 0U);
  EXPECT_EQ(index.file_count(), 2U);
  EXPECT_EQ(index.end_crawl(true), 1U);
  EXPECT_EQ(index.file_count(), 1U);
  EXPECT_FALSE(index.find_dir(m, "abc"));
  EXPECT_TRUE(index.find_file(m, "b.bin"));
}

TEST(Index, EmptiedBucketDirectoriesAreOfferedOnceAndTopLevelNever) {
  Index index;
  const DirId rank = index.add_dir(index.root(), "llama_0123456789ab_r0");
  const DirId b1 = index.add_dir(rank, "abc");
  const DirId b2 = index.add_dir(b1, "de_g0");
  const FileId f =
      index.observe(b2, block_name(1), FileKind::kBlock, seen(1, kNow),
                    MergePolicy::kStatIsTruth, kNow);
  index.remove_file(f);
  EXPECT_EQ(index.take_empty_dirs(), std::vector<DirId>{b2});
  EXPECT_TRUE(index.take_empty_dirs().empty());
  EXPECT_EQ(index.dir_path(b2), "llama_0123456789ab_r0/abc/de_g0");
  EXPECT_TRUE(index.remove_dir(b2));
  EXPECT_EQ(index.take_empty_dirs(), std::vector<DirId>{b1});
  EXPECT_TRUE(index.remove_dir(b1));
  // The rank directory is never offered, even when empty.
  EXPECT_TRUE(index.take_empty_dirs().empty());
  EXPECT_FALSE(index.remove_dir(index.root()));
}

TEST(Index, NamesThatAreNotBlockHashesSurvive) {
  Index index;
  const DirId d = index.add_dir(index.root(), std::string(40, 'x'));
  const std::string odd = "bad\xff\nname.bin";
  const FileId f = index.observe(d, odd, FileKind::kBlock, seen(1, kNow),
                                 MergePolicy::kStatIsTruth, kNow);
  const FileId t =
      index.observe(d, "0123456789abcdef.bin_12.tmp", FileKind::kTemp,
                    seen(2, kNow - 5), MergePolicy::kStatIsTruth, kNow);
  EXPECT_EQ(index.file_name(f), odd);
  EXPECT_EQ(index.find_file(d, odd), f);
  EXPECT_EQ(index.dir_path(d), std::string(40, 'x'));
  // Temp files are not eviction candidates; they are found as orphans.
  EXPECT_EQ(names(index.coldest(10)), std::vector<std::string>{odd});
  EXPECT_EQ(index.stale_temps(kNow, 10).size(), 1U);
  EXPECT_TRUE(index.stale_temps(kNow - 10, 10).empty());
  index.remove_file(t);
  EXPECT_TRUE(index.stale_temps(kNow, 10).empty());
}

TEST(Index, SlotsAreReusedAndTotalsStayExact) {
  Index index;
  const DirId d = index.add_dir(index.root(), "m");
  for (int round = 0; round < 3; ++round) {
    std::vector<FileId> ids;
    for (std::uint64_t i = 0; i < 1000; ++i) {
      ids.push_back(index.observe(d, block_name(i), FileKind::kBlock,
                                  seen(i + 1, kNow - static_cast<TimeNs>(i)),
                                  MergePolicy::kStatIsTruth, kNow));
    }
    EXPECT_EQ(index.file_count(), 1000U);
    EXPECT_EQ(index.total_bytes(), 1000U * 4096U);
    index.coldest(1);  // settle half of them into the list
    for (std::size_t i = 0; i < ids.size(); i += 2) {
      index.remove_file(ids[i]);
    }
    for (std::size_t i = 1; i < ids.size(); i += 2) {
      index.remove_file(ids[i]);
    }
    EXPECT_EQ(index.file_count(), 0U);
    EXPECT_EQ(index.total_bytes(), 0U);
    EXPECT_TRUE(index.coldest(10).empty());
  }
  EXPECT_LE(index.stats().memory_bytes, 1000U * 200U);
}

}  // namespace
}  // namespace pvc
