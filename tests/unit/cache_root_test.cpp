#include "fs/cache_root.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace pvc {
namespace {

namespace fs = std::filesystem;

// A mount path with a cache directory below it, and a directory outside.
class CacheRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "pvc-root-XXXXXX");
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    top_ = tmpl;
    fs::create_directories(top_ / "mnt" / "kv" / "models");
    fs::create_directories(top_ / "outside" / "models");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(top_, ec);
  }
  std::string mnt() const { return (top_ / "mnt").string(); }

  fs::path top_;
};

TEST_F(CacheRootTest, OpensTheCacheDirectoryBeneathTheMountPath) {
  int err = -1;
  const CacheRoot root = CacheRoot::open({mnt(), "kv/models"}, err);
  ASSERT_TRUE(root.valid()) << err;
  EXPECT_EQ(err, 0);
  EXPECT_EQ(root.path(), mnt() + "/kv/models");
  struct stat held {};
  struct stat real {};
  ASSERT_EQ(::fstat(root.fd(), &held), 0);
  ASSERT_EQ(::stat(root.path().c_str(), &real), 0);
  EXPECT_EQ(held.st_ino, real.st_ino);
  EXPECT_FALSE(root.stale());
}

TEST_F(CacheRootTest, ALinkAsTheLastComponentIsRefusedAsALink) {
  fs::create_symlink(top_ / "outside" / "models", top_ / "mnt" / "linked");
  int err = 0;
  EXPECT_FALSE(CacheRoot::open({mnt(), "linked"}, err).valid());
  EXPECT_EQ(err, ELOOP);
}

TEST_F(CacheRootTest, ALinkEarlierInThePathIsRefusedAsALink) {
  fs::create_symlink(top_ / "outside", top_ / "mnt" / "via");
  int err = 0;
  EXPECT_FALSE(CacheRoot::open({mnt(), "via/models"}, err).valid());
  EXPECT_EQ(err, ELOOP);
}

TEST_F(CacheRootTest, AFileOrNothingIsNotALink) {
  {
    std::FILE* f = std::fopen((top_ / "mnt" / "afile").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  int err = 0;
  EXPECT_FALSE(CacheRoot::open({mnt(), "afile"}, err).valid());
  EXPECT_EQ(err, ENOTDIR);
  EXPECT_FALSE(CacheRoot::open({mnt(), "missing/models"}, err).valid());
  EXPECT_EQ(err, ENOENT);
}

TEST_F(CacheRootTest, ALinkInTheMountPathItselfIsTheOperatorsChoice) {
  fs::create_symlink(top_ / "mnt", top_ / "mnt-link");
  int err = -1;
  const CacheRoot root =
      CacheRoot::open({(top_ / "mnt-link").string(), "kv/models"}, err);
  EXPECT_TRUE(root.valid()) << err;
}

}  // namespace
}  // namespace pvc
