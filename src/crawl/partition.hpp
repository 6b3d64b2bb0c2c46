// Which crawler walks which first-level bucket: the bucket's hex value
// modulo 16 picks one of 16 slots, and N crawlers (N dividing 16) each own
// 16/N consecutive slots. This is the partition the reference evictor's
// NUM_CRAWLER_PROCESSES used, kept so existing settings mean the same.
#pragma once

namespace pvc {

constexpr unsigned kPartitionSlots = 16;

inline bool valid_crawler_count(unsigned n) {
  return n == 1 || n == 2 || n == 4 || n == 8 || n == 16;
}

inline unsigned crawler_for_bucket(unsigned bucket_value, unsigned crawlers) {
  return (bucket_value % kPartitionSlots) / (kPartitionSlots / crawlers);
}

}  // namespace pvc
