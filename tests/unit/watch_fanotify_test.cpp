// fanotify on a real kernel: a throw-away ext4 image is loop-mounted and the
// test makes the cache writer's and readers' moves on it while a group
// watches. Needs root (mount, CAP_SYS_ADMIN for the filesystem mark): skips
// with a reason elsewhere, and fails when CI is set, since a CI run that
// skips these has tested nothing.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"
#include "watch/event_decoder.hpp"
#include "watch/fanotify_abi.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/handle_key.hpp"

namespace pvc {
namespace {

// Long enough for a loaded CI machine; events normally arrive within
// microseconds, and waits end as soon as everything expected is there.
constexpr auto kEventTimeout = std::chrono::seconds(10);
constexpr int kImageMiB = 64;

bool in_ci() {
  const char* ci = std::getenv("CI");
  if (ci == nullptr) {
    return false;
  }
  std::string value(ci);
  std::transform(value.begin(), value.end(), value.begin(), ::tolower);
  return !(value.empty() || value == "0" || value == "false" || value == "no");
}

// Runs a system tool (looked up in the sbin directories first, where root's
// tools live even when PATH lacks them). Returns its exit status; its
// output goes to `output`.
int run_tool(const std::vector<std::string>& args, std::string& output) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    output = std::strerror(errno);
    return -1;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, 0);
    ::dup2(pipe_fds[1], 1);
    ::dup2(pipe_fds[1], 2);
    std::vector<char*> argv;
    for (const std::string& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
      ::execv((dir + args[0]).c_str(), argv.data());
    }
    ::execvp(args[0].c_str(), argv.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  output.clear();
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof(buf))) > 0 ||
         (n < 0 && errno == EINTR)) {
    output.append(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) {
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// What a test saw, copied out of the read buffer.
struct Seen {
  std::uint64_t mask = 0;
  std::int32_t pid = 0;
  bool overflow = false;
  HandleKey dir;
  std::string name;
  HandleKey object;
  HandleKey new_dir;
  std::string new_name;
};

std::string dump(const std::vector<Seen>& events) {
  std::ostringstream out;
  out << events.size() << " events:\n";
  for (const Seen& e : events) {
    out << "  mask " << std::hex << e.mask << std::dec << " pid " << e.pid
        << (e.overflow ? " OVERFLOW" : "") << " name '" << e.name << "'";
    if (!e.new_name.empty()) {
      out << " -> '" << e.new_name << "'";
    }
    out << " dir [" << to_string(e.dir) << "]";
    if (e.object.valid()) {
      out << " object [" << to_string(e.object) << "]";
    }
    out << "\n";
  }
  return out.str();
}

// Reads and decodes events from a group.
class Reader {
 public:
  explicit Reader(const FanotifyGroup& group) : group_(group) {}

  // Reads whatever is queued now; false on a read error.
  bool drain() {
    for (;;) {
      int err = 0;
      const std::size_t n = group_.read(buffer_, err);
      if (err == EAGAIN) {
        return true;
      }
      if (err != 0) {
        read_error_ = err;
        return false;
      }
      decode_events(std::span(buffer_.data(), n), decoded_, stats_);
      for (const DecodedEvent& ev : decoded_) {
        seen_.push_back(Seen{ev.mask, ev.pid, ev.overflow, ev.dir,
                             std::string(ev.name), ev.object, ev.new_dir,
                             std::string(ev.new_name)});
      }
    }
  }

  // Reads until `unmet` (a list of what is still missing) comes back empty
  // or the timeout passes. Returns what is still missing.
  std::vector<std::string> wait_for(
      const std::function<std::vector<std::string>(const std::vector<Seen>&)>&
          unmet) {
    const auto deadline = std::chrono::steady_clock::now() + kEventTimeout;
    for (;;) {
      if (!drain()) {
        return {"read failed: " + std::string(std::strerror(read_error_))};
      }
      std::vector<std::string> missing = unmet(seen_);
      const auto left = deadline - std::chrono::steady_clock::now();
      if (missing.empty() || left <= std::chrono::milliseconds(0)) {
        return missing;
      }
      pollfd pfd{group_.fd(), POLLIN, 0};
      ::poll(&pfd, 1,
             static_cast<int>(
                 std::chrono::duration_cast<std::chrono::milliseconds>(left)
                     .count()) +
                 1);
    }
  }

  const std::vector<Seen>& seen() const { return seen_; }
  void forget() { seen_.clear(); }
  const DecodeStats& stats() const { return stats_; }

 private:
  const FanotifyGroup& group_;
  std::vector<std::uint8_t> buffer_ =
      std::vector<std::uint8_t>(FanotifyGroup::kReadBufferBytes);
  std::vector<DecodedEvent> decoded_;
  DecodeStats stats_;
  std::vector<Seen> seen_;
  int read_error_ = 0;
};

HandleKey handle_of_path(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  int err = fd ? 0 : errno;
  HandleKey key = fd ? handle_of_dir(fd.get(), err) : HandleKey{};
  EXPECT_EQ(err, 0) << path << ": " << std::strerror(err);
  return key;
}

void write_file(const std::string& path, std::size_t bytes) {
  UniqueFd fd(
      ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd) << path << ": " << std::strerror(errno);
  const std::string data(bytes, 'k');
  ASSERT_EQ(::write(fd.get(), data.data(), data.size()),
            static_cast<ssize_t>(data.size()));
}

void read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd) << path << ": " << std::strerror(errno);
  char buf[4096];
  ASSERT_GT(::read(fd.get(), buf, sizeof(buf)), 0);
}

// Root, a scratch directory, and whatever the test mounted below it, all
// undone in TearDown even when the test fails half way.
class WatchFanotifyBase : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      const char* reason =
          "needs root (loop mounts, and CAP_SYS_ADMIN for a fanotify "
          "filesystem mark)";
      if (in_ci()) {
        FAIL() << reason << ", and CI is set: refusing to skip";
      }
      GTEST_SKIP() << reason;
    }
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pvc-watch-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    scratch_ = tmpl;
    mnt_ = scratch_ + "/mnt";
    ASSERT_EQ(::mkdir(mnt_.c_str(), 0755), 0);
  }

  void TearDown() override {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      unmount(*it);
    }
    mounts_.clear();
    if (!scratch_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(scratch_, ec);
    }
  }

  // A setup step failed for a reason outside the code under test (no loop
  // devices in this container, say): fail in CI, skip elsewhere.
  void setup_failed(const std::string& what) {
    if (in_ci()) {
      FAIL() << what;
    }
    GTEST_SKIP() << what;
  }

  // Makes and loop-mounts an ext4 image on mnt_.
  void mount_ext4(const std::vector<std::string>& mkfs_extra = {}) {
    const std::string image = scratch_ + "/fs.img";
    {
      UniqueFd fd(::open(image.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
      ASSERT_TRUE(fd);
      ASSERT_EQ(::ftruncate(fd.get(), off_t{kImageMiB} << 20), 0);
    }
    std::vector<std::string> mkfs = {"mkfs.ext4", "-q", "-F", "-E",
                                     "lazy_itable_init=0,lazy_journal_init=0"};
    mkfs.insert(mkfs.end(), mkfs_extra.begin(), mkfs_extra.end());
    mkfs.push_back(image);
    std::string out;
    if (run_tool(mkfs, out) != 0) {
      return setup_failed("mkfs.ext4 failed: " + out);
    }
    if (run_tool({"mount", "-t", "ext4", "-o", "loop", image, mnt_}, out) !=
        0) {
      return setup_failed("loop mount failed: " + out);
    }
    mounts_.push_back(mnt_);
  }

  void mount_tmpfs() {
    std::string out;
    if (run_tool({"mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt_},
                 out) != 0) {
      return setup_failed("tmpfs mount failed: " + out);
    }
    mounts_.push_back(mnt_);
  }

  void bind_mount(const std::string& from, const std::string& to) {
    ASSERT_EQ(::mkdir(to.c_str(), 0755), 0);
    std::string out;
    ASSERT_EQ(run_tool({"mount", "--bind", from, to}, out), 0) << out;
    mounts_.push_back(to);
  }

  static void unmount(const std::string& path) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      if (::umount2(path.c_str(), 0) == 0 || errno == EINVAL ||
          errno == ENOENT) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::umount2(path.c_str(), MNT_DETACH);
  }

  FanotifyGroup open_group(const std::string& path,
                           WatchLevel max_level = kRichestWatchLevel) {
    int err = 0;
    std::string detail;
    FanotifyGroup group = FanotifyGroup::open(path, err, detail, max_level);
    EXPECT_TRUE(group.valid()) << describe_errno(err) << ": " << detail;
    return group;
  }

  std::string scratch_;
  std::string mnt_;
  std::vector<std::string> mounts_;
};

using WatchFanotify = WatchFanotifyBase;

TEST_F(WatchFanotify, ChoosesTheRichestLevelTheKernelAccepts) {
  ASSERT_NO_FATAL_FAILURE(mount_ext4());
  if (IsSkipped()) {
    return;
  }
  const FanotifyGroup best = open_group(mnt_);
  ASSERT_TRUE(best.valid());
  std::cout << "[ info     ] level " << watch_level_name(best.level())
            << ", queue " << best.queue_events() << " events, fs "
            << describe(best.fs()) << "\n";
  RecordProperty("level", std::string(watch_level_name(best.level())));
  EXPECT_EQ(best.fs().name, "ext4");
  EXPECT_FALSE(best.events_may_be_incomplete());
  EXPECT_GT(best.queue_events(), 0U);
  EXPECT_NE(best.mask() & FAN_OPEN, 0U);
  EXPECT_NE(best.mask() & FAN_ONDIR, 0U);
  EXPECT_EQ(best.mask() & FAN_Q_OVERFLOW, 0U);
  EXPECT_NE(best.init_flags() & FAN_NONBLOCK, 0U);
  EXPECT_EQ(best.init_flags() & FAN_UNLIMITED_QUEUE, 0U);
  EXPECT_EQ(best.path(), mnt_);
  UniqueFd root(::open(mnt_.c_str(), O_PATH | O_CLOEXEC));
  int err = 0;
  EXPECT_EQ(best.fsid(), fsid_of(root.get(), err));
  if (best.reports_renames()) {
    EXPECT_NE(best.mask() & kFanRename, 0U);
    EXPECT_EQ(best.mask() & (FAN_MOVED_FROM | FAN_MOVED_TO), 0U);
  } else {
    EXPECT_EQ(best.mask() & (FAN_MOVED_FROM | FAN_MOVED_TO),
              FAN_MOVED_FROM | FAN_MOVED_TO);
  }
  for (const WatchLevel cap : {WatchLevel::kDfidName, WatchLevel::kDfidNameFid,
                               WatchLevel::kRenameTargetFid}) {
    const FanotifyGroup capped = open_group(mnt_, cap);
    ASSERT_TRUE(capped.valid());
    EXPECT_EQ(capped.level(), std::min(cap, best.level()));
  }
}

TEST_F(WatchFanotify, MissingPathIsExplained) {
  int err = 0;
  std::string detail;
  const FanotifyGroup group =
      FanotifyGroup::open(scratch_ + "/absent", err, detail);
  EXPECT_FALSE(group.valid());
  EXPECT_EQ(err, ENOENT);
  EXPECT_NE(detail.find("does not exist"), std::string::npos) << detail;
  EXPECT_NE(detail.find("fanotify_mark"), std::string::npos) << detail;
}

// On kernels where tmpfs has no filesystem id, file-handle events cannot
// work on it; the refusal must say so rather than leave a bare errno.
TEST_F(WatchFanotify, TmpfsEitherWorksOrIsExplained) {
  ASSERT_NO_FATAL_FAILURE(mount_tmpfs());
  if (IsSkipped()) {
    return;
  }
  int err = 0;
  std::string detail;
  const FanotifyGroup group = FanotifyGroup::open(mnt_, err, detail);
  if (group.valid()) {
    EXPECT_EQ(group.fs().name, "tmpfs");
  } else {
    EXPECT_EQ(err, ENODEV) << detail;
    EXPECT_NE(detail.find("filesystem id"), std::string::npos) << detail;
  }
}

// The writer's and a reader's whole cycle, at every level.
class WatchFanotifyLevel : public WatchFanotifyBase,
                           public ::testing::WithParamInterface<WatchLevel> {};

TEST_P(WatchFanotifyLevel, LifecycleEventsArriveWithTheirDirectoryHandle) {
  ASSERT_NO_FATAL_FAILURE(mount_ext4());
  if (IsSkipped()) {
    return;
  }
  const FanotifyGroup group = open_group(mnt_, GetParam());
  ASSERT_TRUE(group.valid());
  if (group.level() != GetParam()) {
    GTEST_SKIP() << "this kernel offers only "
                 << watch_level_name(group.level());
  }
  const bool fid = group.level() >= WatchLevel::kDfidNameFid;
  const bool renames = group.reports_renames();
  Reader reader(group);

  const std::string dir = mnt_ + "/m_r0";
  const std::string temp = "0123456789abcdef.bin_17.tmp";
  const std::string block = "0123456789abcdef.bin";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(write_file(dir + "/" + temp, 8192));
  const HandleKey file = handle_of_path(dir + "/" + temp);
  ASSERT_EQ(::rename((dir + "/" + temp).c_str(), (dir + "/" + block).c_str()),
            0);
  ASSERT_NO_FATAL_FAILURE(read_file(dir + "/" + block));
  const HandleKey root_key = handle_of_path(mnt_);
  const HandleKey dir_key = handle_of_path(dir);
  ASSERT_TRUE(root_key.valid() && dir_key.valid() && file.valid());
  ASSERT_EQ(::unlink((dir + "/" + block).c_str()), 0);
  ASSERT_EQ(::rmdir(dir.c_str()), 0);

  // The kernel merges events on one object while they wait, so what is
  // checked is the union of bits per (directory, name).
  const auto unmet = [&](const std::vector<Seen>& seen) {
    std::map<std::pair<std::string, std::string>, std::uint64_t> bits;
    bool rename_seen = false;
    for (const Seen& e : seen) {
      if ((e.mask & kFanRename) != 0) {
        rename_seen = rename_seen || (e.dir == dir_key && e.name == temp &&
                                      e.new_dir == dir_key &&
                                      e.new_name == block && e.object == file);
        continue;
      }
      const std::string where = e.dir == root_key  ? "root"
                                : e.dir == dir_key ? "dir"
                                                   : "other";
      bits[{where, e.name}] |= e.mask;
    }
    std::vector<std::string> missing;
    const auto need = [&](const char* where, const std::string& name,
                          std::uint64_t mask) {
      const std::uint64_t have = bits[{where, name}];
      if ((have & mask) != mask) {
        std::ostringstream out;
        out << where << "/" << name << ": bits " << std::hex << (mask & ~have)
            << " missing";
        missing.push_back(out.str());
      }
    };
    need("root", "m_r0", FAN_CREATE | FAN_DELETE | FAN_ONDIR);
    need("dir", temp, FAN_CREATE | FAN_OPEN | FAN_CLOSE_WRITE);
    need("dir", block, FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE | FAN_DELETE);
    if (renames) {
      if (!rename_seen) {
        missing.push_back("FAN_RENAME " + temp + " -> " + block);
      }
    } else {
      need("dir", temp, FAN_MOVED_FROM);
      need("dir", block, FAN_MOVED_TO);
    }
    return missing;
  };
  const std::vector<std::string> missing = reader.wait_for(unmet);
  EXPECT_TRUE(missing.empty()) << ::testing::PrintToString(missing) << "\n"
                               << dump(reader.seen());
  EXPECT_EQ(reader.stats().malformed, 0U);
  EXPECT_EQ(reader.stats().overflows, 0U);

  for (const Seen& e : reader.seen()) {
    EXPECT_EQ(e.pid, ::getpid()) << dump({e});
    EXPECT_EQ(e.dir.fsid, group.fsid()) << dump({e});
    const bool about_file = e.name == temp || e.name == block;
    if (!about_file) {
      continue;
    }
    // Opens and closes name the file itself from FAN_REPORT_FID on; with
    // FAN_REPORT_TARGET_FID so do creates, deletes and renames.
    const bool use = (e.mask & (FAN_OPEN | FAN_ACCESS | FAN_CLOSE)) != 0;
    if (renames || (fid && use)) {
      EXPECT_EQ(e.object, file) << dump({e});
    } else if (!fid) {
      EXPECT_FALSE(e.object.valid()) << dump({e});
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    WatchLevels, WatchFanotifyLevel,
    ::testing::Values(WatchLevel::kRenameTargetFid, WatchLevel::kDfidNameFid,
                      WatchLevel::kDfidName),
    [](const ::testing::TestParamInfo<WatchLevel>& param) {
      std::string name(watch_level_name(param.param));
      std::replace_if(
          name.begin(), name.end(),
          [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); },
          '_');
      return name;
    });

// Each vLLM pod sees the volume through its own bind mount. A filesystem
// mark must hear a read through any of them, whichever mount it was placed
// through.
TEST_F(WatchFanotify, ReadsThroughAnotherBindMountAreSeen) {
  ASSERT_NO_FATAL_FAILURE(mount_ext4());
  if (IsSkipped()) {
    return;
  }
  const std::string sub = mnt_ + "/pvc-1234";
  ASSERT_EQ(::mkdir(sub.c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(write_file(sub + "/00000000000000aa.bin", 4096));
  const std::string pod = scratch_ + "/pod";
  ASSERT_NO_FATAL_FAILURE(bind_mount(sub, pod));
  const HandleKey sub_key = handle_of_path(sub);
  EXPECT_EQ(handle_of_path(pod), sub_key);  // same directory, same bytes

  const FanotifyGroup on_main = open_group(mnt_);
  const FanotifyGroup on_pod = open_group(pod);
  ASSERT_TRUE(on_main.valid() && on_pod.valid());
  Reader main_reader(on_main);
  Reader pod_reader(on_pod);

  const auto read_of = [&](const std::string& name) {
    return [&sub_key, name](const std::vector<Seen>& seen) {
      std::uint64_t bits = 0;
      for (const Seen& e : seen) {
        if (e.dir == sub_key && e.name == name) {
          bits |= e.mask;
        }
      }
      const std::uint64_t want = FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE;
      return (bits & want) == want
                 ? std::vector<std::string>{}
                 : std::vector<std::string>{"read of " + name};
    };
  };

  // A pod reads through its bind mount; the group marked via the main
  // mount hears it.
  ASSERT_NO_FATAL_FAILURE(read_file(pod + "/00000000000000aa.bin"));
  EXPECT_TRUE(main_reader.wait_for(read_of("00000000000000aa.bin")).empty())
      << dump(main_reader.seen());

  // And the other way round: marked via the bind mount, read through the
  // main mount.
  ASSERT_NO_FATAL_FAILURE(write_file(sub + "/00000000000000bb.bin", 4096));
  ASSERT_NO_FATAL_FAILURE(read_file(sub + "/00000000000000bb.bin"));
  EXPECT_TRUE(pod_reader.wait_for(read_of("00000000000000bb.bin")).empty())
      << dump(pod_reader.seen());
}

// A queue that fills is reported as FAN_Q_OVERFLOW, the queue stays
// bounded, and events flow again once it is drained.
TEST_F(WatchFanotify, QueueOverflowIsReportedAndRecovered) {
  std::string limit_text;
  std::uint64_t limit = 16384;
  if (FILE* f = std::fopen("/proc/sys/fs/fanotify/max_queued_events", "r")) {
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) == 1) {
      limit = v;
    }
    std::fclose(f);
  }
  // Beyond this, filling the queue takes too long for a unit test.
  constexpr std::uint64_t kMaxFillable = 200'000;
  if (limit > kMaxFillable) {
    GTEST_SKIP() << "max_queued_events is " << limit;
  }
  const std::uint64_t files = limit + 1000;
  ASSERT_NO_FATAL_FAILURE(
      mount_ext4({"-N", std::to_string(files + 1000), "-i", "4096"}));
  if (IsSkipped()) {
    return;
  }
  const FanotifyGroup group = open_group(mnt_);
  ASSERT_TRUE(group.valid());
  ASSERT_EQ(group.queue_events(), limit);
  Reader reader(group);

  const std::string dir = mnt_ + "/flood";
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  UniqueFd dir_fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir_fd);
  char name[32];
  for (std::uint64_t i = 0; i < files; ++i) {
    std::snprintf(name, sizeof(name), "%016llx.bin",
                  static_cast<unsigned long long>(i));
    const int fd =
        ::openat(dir_fd.get(), name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << name << ": " << std::strerror(errno);
    ::close(fd);
  }
  ASSERT_TRUE(reader.drain());
  EXPECT_EQ(reader.stats().overflows, 1U);
  EXPECT_EQ(reader.stats().malformed, 0U);
  // The limit counts the events waiting; the overflow event comes on top.
  EXPECT_LE(reader.stats().events, limit + 1);
  ASSERT_FALSE(reader.seen().empty());
  EXPECT_TRUE(reader.seen().back().overflow) << "overflow is queued last";

  reader.forget();
  ASSERT_NO_FATAL_FAILURE(write_file(dir + "/after.bin", 1));
  const auto after = [](const std::vector<Seen>& seen) {
    for (const Seen& e : seen) {
      if (e.name == "after.bin" && (e.mask & FAN_CLOSE_WRITE) != 0) {
        return std::vector<std::string>{};
      }
    }
    return std::vector<std::string>{"after.bin"};
  };
  EXPECT_TRUE(reader.wait_for(after).empty()) << dump(reader.seen());
}

// Without CAP_SYS_ADMIN the filesystem mark is refused, and the message
// says what to grant. Runs unprivileged directly, or as root in a child
// that gives up root first.
TEST(WatchFanotifyUnprivileged, RefusalNamesTheCapability) {
  const auto attempt = [](std::string& detail) {
    int err = 0;
    const FanotifyGroup group = FanotifyGroup::open("/", err, detail);
    return group.valid() ? 0 : err;
  };
  if (::geteuid() != 0) {
    std::string detail;
    EXPECT_EQ(attempt(detail), EPERM) << detail;
    EXPECT_NE(detail.find("CAP_SYS_ADMIN"), std::string::npos) << detail;
    return;
  }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    constexpr uid_t kNobody = 65534;
    if (::setresgid(kNobody, kNobody, kNobody) != 0 ||
        ::setresuid(kNobody, kNobody, kNobody) != 0) {
      ::_exit(2);
    }
    std::string detail;
    const int err = attempt(detail);
    const bool ok =
        err == EPERM && detail.find("CAP_SYS_ADMIN") != std::string::npos;
    if (!ok) {
      std::fprintf(stderr, "err %d: %s\n", err, detail.c_str());
    }
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's message above";
}

}  // namespace
}  // namespace pvc
