#include "layout/names.hpp"

#include <gtest/gtest.h>

namespace pvc {
namespace {

TEST(Names, ClassifiesBlocksTempsAndOthers) {
  EXPECT_EQ(classify_file("0123456789abcdef.bin"), FileKind::kBlock);
  EXPECT_EQ(classify_file("odd name.bin"), FileKind::kBlock);
  EXPECT_EQ(classify_file("0123456789abcdef.bin_48213.tmp"), FileKind::kTemp);
  EXPECT_EQ(classify_file("notes.tmp"), FileKind::kOther);
  EXPECT_EQ(classify_file("x.bin_.tmp"), FileKind::kOther);
  EXPECT_EQ(classify_file("x.bin_12a.tmp"), FileKind::kOther);
  EXPECT_EQ(classify_file(".bin"), FileKind::kOther);
  EXPECT_EQ(classify_file(".bin_1.tmp"), FileKind::kOther);
  EXPECT_EQ(classify_file("config.json"), FileKind::kOther);
}

TEST(Names, BlockHashNeedsExactlySixteenLowerHex) {
  EXPECT_EQ(block_hash("0123456789abcdef.bin"), 0x0123456789abcdefULL);
  EXPECT_EQ(block_hash("ffffffffffffffff.bin"), UINT64_MAX);
  EXPECT_FALSE(block_hash("0123456789ABCDEF.bin"));
  EXPECT_FALSE(block_hash("0123456789abcde.bin"));
  EXPECT_FALSE(block_hash("0123456789abcdef0.bin"));
  EXPECT_FALSE(block_hash("0123456789abcdeg.bin"));
  EXPECT_EQ(block_name(0x0123456789abcdefULL), "0123456789abcdef.bin");
  EXPECT_EQ(block_name(0), "0000000000000000.bin");
}

TEST(Names, BucketValuesOfEachWidth) {
  EXPECT_EQ(bucket_value("ab", 0), 0xabU);
  EXPECT_EQ(bucket_value("abc", 0), 0xabcU);
  EXPECT_EQ(bucket_value("ABCD", 0), 0xabcdU);
  EXPECT_FALSE(bucket_value("a", 0));
  EXPECT_FALSE(bucket_value("abcde", 0));
  EXPECT_FALSE(bucket_value("abg", 0));
  EXPECT_EQ(bucket_value("abc", 3), 0xabcU);
  EXPECT_FALSE(bucket_value("ab", 3));
}

TEST(Names, RemovableDirectoriesFollowTheWritersPattern) {
  EXPECT_TRUE(is_bucket_dir_name("abc"));
  EXPECT_TRUE(is_bucket_dir_name("de_g0"));
  EXPECT_TRUE(is_bucket_dir_name("de_g12"));
  EXPECT_FALSE(is_bucket_dir_name("de_g"));
  EXPECT_FALSE(is_bucket_dir_name("llama_0123456789ab_r0"));
  EXPECT_FALSE(is_bucket_dir_name("abcde"));
  EXPECT_FALSE(is_bucket_dir_name(""));
}

TEST(Names, ConfigDirectoryOfARankDirectory) {
  EXPECT_EQ(config_dir_of_rank_dir("llama_0123456789ab_r0"),
            "llama_0123456789ab");
  EXPECT_EQ(config_dir_of_rank_dir("org_model_0123456789ab_r12"),
            "org_model_0123456789ab");
  EXPECT_FALSE(config_dir_of_rank_dir("llama_0123456789ab"));
  EXPECT_FALSE(config_dir_of_rank_dir("llama_0123_r0"));
}

}  // namespace
}  // namespace pvc
