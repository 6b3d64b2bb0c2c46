#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <tsl/robin_map.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/unique_fd.hpp"
#include "watch/dir_handles.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/fs_kind.hpp"
#include "watch/handle_key.hpp"

namespace pvc {
namespace {

// A scratch directory under the test's temporary directory, removed after.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pvc-watch-handle-XXXXXX")
            .string();
    if (::mkdtemp(tmpl.data()) != nullptr) {
      path_ = tmpl;
    }
  }
  ~ScratchDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(WatchHandleKey, DirectoryHandlesAreStableAndDistinct) {
  ScratchDir scratch;
  ASSERT_FALSE(scratch.path().empty());
  const std::string a = scratch.path() + "/a";
  const std::string b = scratch.path() + "/b";
  ASSERT_EQ(::mkdir(a.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);

  UniqueFd fa(::open(a.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd fa_path(::open(a.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  UniqueFd fb(::open(b.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fa && fa_path && fb);

  int err = 0;
  const HandleKey ka = handle_of_dir(fa.get(), err);
  if (err == EOPNOTSUPP) {
    GTEST_SKIP() << "the temporary directory's filesystem has no handles";
  }
  ASSERT_EQ(err, 0);
  ASSERT_TRUE(ka.valid());
  EXPECT_EQ(ka.fsid, fsid_of(fa.get(), err));
  EXPECT_EQ(handle_of_dir(fa_path.get(), err), ka);  // O_PATH works too
  EXPECT_EQ(handle_of_dir(fa.get(), ka.fsid, err), ka);
  const HandleKey kb = handle_of_dir(fb.get(), err);
  ASSERT_EQ(err, 0);
  EXPECT_NE(ka, kb);
  EXPECT_EQ(ka.fsid, kb.fsid);
  EXPECT_NE(ka.hash(), kb.hash());
  EXPECT_NE(to_string(ka).find("handle "), std::string::npos);
}

TEST(WatchHandleKey, BadDescriptorSetsErr) {
  int err = 0;
  EXPECT_FALSE(handle_of_dir(-1, err).valid());
  EXPECT_EQ(err, EBADF);
}

TEST(WatchHandleKey, EveryByteCountsInEqualityAndHash) {
  const std::uint8_t base[20] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  const HandleKey k = HandleKey::make(7, 1, base, sizeof(base));
  EXPECT_EQ(k, HandleKey::make(7, 1, base, sizeof(base)));
  EXPECT_EQ(k.hash(), HandleKey::make(7, 1, base, sizeof(base)).hash());
  EXPECT_NE(k, HandleKey::make(8, 1, base, sizeof(base)));
  EXPECT_NE(k, HandleKey::make(7, 2, base, sizeof(base)));
  EXPECT_NE(k, HandleKey::make(7, 1, base, sizeof(base) - 1));
  for (std::size_t i = 0; i < sizeof(base); ++i) {
    std::uint8_t changed[sizeof(base)];
    std::memcpy(changed, base, sizeof(base));
    changed[i] ^= 0x40;
    const HandleKey other = HandleKey::make(7, 1, changed, sizeof(changed));
    EXPECT_NE(k, other) << i;
    EXPECT_NE(k.hash(), other.hash()) << i;
  }
}

TEST(WatchHandleKey, WorksAsAMapKey) {
  tsl::robin_map<HandleKey, int, HandleKeyHash> map;
  for (std::uint32_t ino = 0; ino < 10000; ++ino) {
    std::uint8_t h[8] = {};
    std::memcpy(h, &ino, sizeof(ino));
    map.emplace(HandleKey::make(1, 1, h, sizeof(h)), static_cast<int>(ino));
  }
  EXPECT_EQ(map.size(), 10000U);
  std::uint8_t h[8] = {};
  const std::uint32_t ino = 4321;
  std::memcpy(h, &ino, sizeof(ino));
  const auto it = map.find(HandleKey::make(1, 1, h, sizeof(h)));
  ASSERT_NE(it, map.end());
  EXPECT_EQ(it->second, 4321);
}

TEST(WatchHandleKey, LongHandlesKeepPrefixLengthAndHash) {
  std::uint8_t h[128];
  for (std::size_t i = 0; i < sizeof(h); ++i) {
    h[i] = static_cast<std::uint8_t>(i * 7);
  }
  const HandleKey k = HandleKey::make(1, 1, h, sizeof(h));
  EXPECT_TRUE(k.hashed());
  EXPECT_EQ(k.size, 128);
  EXPECT_EQ(std::memcmp(k.bytes.data(), h, HandleKey::kHashedPrefixBytes), 0);
  EXPECT_NE(k, HandleKey::make(1, 1, h, sizeof(h) - 1));
  h[100] ^= 1;
  EXPECT_NE(k, HandleKey::make(1, 1, h, sizeof(h)));
  EXPECT_FALSE(HandleKey::make(1, 1, h, HandleKey::kInlineBytes).hashed());
}

TEST(WatchDirHandles, EveryKindOfKeyRoundTripsWithoutConfusion) {
  DirHandles handles;
  const auto key = [](std::uint64_t fsid, std::int32_t type, std::uint32_t ino,
                      std::size_t size) {
    std::uint8_t h[40] = {};
    std::memcpy(h, &ino, sizeof(ino));
    return HandleKey::make(fsid, type, h, size);
  };
  // Compact keys (the first fsid, short handles) for many directories.
  for (std::uint32_t ino = 1; ino <= 20000; ++ino) {
    handles.put(key(7, 1, ino, 8), ino);
  }
  // The same bytes under another fsid, a wide type, a longer length, and
  // a handle too long to store inline: each a different directory.
  handles.put(key(8, 1, 5, 8), 100005);
  handles.put(key(7, 0x10001, 5, 8), 200005);
  handles.put(key(7, 1, 5, 12), 300005);
  handles.put(key(7, 1, 5, 40), 400005);

  EXPECT_EQ(handles.size(), 20004U);
  EXPECT_EQ(handles.find(key(7, 1, 5, 8)), 5U);
  EXPECT_EQ(handles.find(key(7, 1, 19999, 8)), 19999U);
  EXPECT_EQ(handles.find(key(8, 1, 5, 8)), 100005U);
  EXPECT_EQ(handles.find(key(7, 0x10001, 5, 8)), 200005U);
  EXPECT_EQ(handles.find(key(7, 1, 5, 12)), 300005U);
  EXPECT_EQ(handles.find(key(7, 1, 5, 40)), 400005U);
  EXPECT_FALSE(handles.find(key(7, 2, 5, 8)));
  EXPECT_FALSE(handles.find(key(7, 1, 20001, 8)));

  handles.erase(key(7, 1, 5, 8));
  handles.erase(key(8, 1, 5, 8));
  EXPECT_FALSE(handles.find(key(7, 1, 5, 8)));
  EXPECT_FALSE(handles.find(key(8, 1, 5, 8)));
  EXPECT_EQ(handles.find(key(7, 1, 5, 12)), 300005U);
  EXPECT_EQ(handles.size(), 20002U);
  // 20000 compact keys at 80 % load: 32768 buckets of 24 bytes, not the
  // 128-byte buckets whole keys would take.
  EXPECT_LT(handles.memory_bytes(), 32768U * 24 + 4096U * 64);
}

TEST(WatchFsKind, NamesAndTrust) {
  EXPECT_EQ(fs_kind_of_magic(0xEF53).name, "ext4");
  EXPECT_FALSE(fs_kind_of_magic(0xEF53).events_may_be_incomplete);
  EXPECT_FALSE(fs_kind_of_magic(0x58465342).events_may_be_incomplete);
  for (const std::uint32_t shared :
       {0x6969U, 0x00C36400U, 0x0BD00BD0U, 0x47504653U, 0x65735546U,
        0x01021997U, 0xFF534D42U, 0xFE534D42U}) {
    EXPECT_TRUE(fs_kind_of_magic(shared).events_may_be_incomplete) << shared;
  }
  const FsKind unknown = fs_kind_of_magic(0x12345678);
  EXPECT_EQ(unknown.name, "unknown");
  EXPECT_FALSE(unknown.events_may_be_incomplete);
  EXPECT_EQ(describe(unknown), "unknown (0x12345678)");
  EXPECT_EQ(describe(fs_kind_of_magic(0x6969)), "nfs");

  UniqueFd cwd(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int err = 0;
  const FsKind here = fs_kind_of(cwd.get(), err);
  EXPECT_EQ(err, 0);
  EXPECT_NE(here.magic, 0U);
}

TEST(WatchLevelNames, RoundTrip) {
  for (const WatchLevel level :
       {WatchLevel::kDfidName, WatchLevel::kDfidNameFid,
        WatchLevel::kRenameTargetFid}) {
    EXPECT_EQ(parse_watch_level(watch_level_name(level)), level);
  }
  EXPECT_EQ(watch_level_name(WatchLevel::kRenameTargetFid),
            "rename+target-fid");
  EXPECT_EQ(watch_level_name(WatchLevel::kDfidNameFid), "dfid-name+fid");
  EXPECT_EQ(watch_level_name(WatchLevel::kDfidName), "dfid-name");
  EXPECT_FALSE(parse_watch_level("inotify").has_value());
  EXPECT_LT(WatchLevel::kDfidName, kRichestWatchLevel);
}

}  // namespace
}  // namespace pvc
