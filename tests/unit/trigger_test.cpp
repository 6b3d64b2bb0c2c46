#include "usage/trigger.hpp"

#include <gtest/gtest.h>

#include "crawl/partition.hpp"

namespace pvc {
namespace {

Usage bytes_at(double percent, std::uint64_t capacity = 1'000'000) {
  Usage u;
  u.capacity_bytes = capacity;
  u.used_bytes =
      static_cast<std::uint64_t>(static_cast<double>(capacity) * percent / 100);
  u.total_inodes = 1000;
  u.used_inodes = 10;
  return u;
}

TEST(Trigger, HysteresisStartsAtCleanupAndEndsAtTarget) {
  Trigger t(Thresholds{});
  EXPECT_EQ(t.update(bytes_at(84.9)), Transition::kNone);
  EXPECT_FALSE(t.active());
  EXPECT_EQ(t.update(bytes_at(85.0)), Transition::kStarted);
  EXPECT_EQ(t.update(bytes_at(80.0)), Transition::kNone);
  EXPECT_TRUE(t.active()) << "never stops between target and cleanup";
  EXPECT_EQ(t.update(bytes_at(70.1)), Transition::kNone);
  EXPECT_EQ(t.update(bytes_at(70.0)), Transition::kEnded);
  EXPECT_EQ(t.update(bytes_at(80.0)), Transition::kNone);
  EXPECT_FALSE(t.active()) << "never starts between target and cleanup";
}

TEST(Trigger, DeficitIsWhatReachesTarget) {
  Trigger t(Thresholds{});
  const Usage u = bytes_at(90, 1'000'000);
  t.update(u);
  EXPECT_EQ(t.deficit(u).bytes, 200'000U);
  EXPECT_EQ(t.deficit(u).inodes, 0U);
  EXPECT_EQ(t.deficit(bytes_at(70, 1'000'000)).bytes, 0U);
}

TEST(Trigger, InodesHaveTheirOwnHysteresis) {
  Trigger t(Thresholds{});
  Usage u = bytes_at(20);
  u.used_inodes = 990;
  EXPECT_EQ(t.update(u), Transition::kStarted);
  EXPECT_TRUE(t.inodes_active());
  EXPECT_FALSE(t.bytes_active());
  EXPECT_EQ(t.deficit(u).bytes, 0U) << "bytes are below target";
  EXPECT_EQ(t.deficit(u).inodes, 290U);
  u.used_inodes = 700;
  EXPECT_EQ(t.update(u), Transition::kEnded);
}

TEST(Trigger, InodeLimitsCanBeTurnedOff) {
  Thresholds th;
  th.inode_cleanup = 0;
  Trigger t(th);
  Usage u = bytes_at(20);
  u.used_inodes = 1000;
  EXPECT_EQ(t.update(u), Transition::kNone);
  EXPECT_FALSE(t.active());
}

TEST(Trigger, EmergencyAboveItsThreshold) {
  Trigger t(Thresholds{});
  EXPECT_FALSE(t.emergency(bytes_at(94.9)));
  EXPECT_TRUE(t.emergency(bytes_at(95.0)));
}

TEST(Trigger, UsageCountsReservedBlocksAsUnavailable) {
  // df's figure: used / (used + available), not used / total.
  Usage u;
  u.used_bytes = 80;
  u.capacity_bytes = 80 + 15;  // 5 more are reserved for root
  EXPECT_NEAR(u.byte_percent(), 84.21, 0.01);
}

TEST(Partition, SixteenSlotsSplitEvenly) {
  for (const unsigned n : {1U, 2U, 4U, 8U, 16U}) {
    ASSERT_TRUE(valid_crawler_count(n));
    std::vector<unsigned> load(n);
    for (unsigned bucket = 0; bucket < 4096; ++bucket) {
      const unsigned c = crawler_for_bucket(bucket, n);
      ASSERT_LT(c, n);
      ++load[c];
    }
    for (const unsigned l : load) {
      EXPECT_EQ(l, 4096 / n);
    }
  }
  EXPECT_EQ(crawler_for_bucket(0x7, 2), 0U);
  EXPECT_EQ(crawler_for_bucket(0x8, 2), 1U);
  EXPECT_EQ(crawler_for_bucket(0xabc, 16), 0xcU);
  EXPECT_FALSE(valid_crawler_count(3));
  EXPECT_FALSE(valid_crawler_count(32));
}

}  // namespace
}  // namespace pvc
