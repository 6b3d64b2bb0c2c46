// Writes the seed corpus of the decode_events fuzzer.
//
//   make_corpus synth OUTDIR
//       Synthesized buffers laid out byte by byte as the kernel lays them
//       out: every info record type the decoder knows, names of odd
//       lengths, a rename, an overflow, an unknown record type, a long
//       (hashed) handle, several events in one buffer.
//   make_corpus capture DIR OUTDIR   (root; DIR on a scratch filesystem)
//       Real buffers: places a fanotify filesystem mark on DIR's
//       filesystem, reporting directory handles, names and object handles
//       (with FAN_RENAME and FAN_REPORT_TARGET_FID when the kernel has
//       them), does what the cache writer and readers do below DIR (mkdir,
//       temp file, write, rename, read, unlink, rmdir) and saves each
//       read() as one file.
//
// Not part of the fuzz run; its outputs are committed under corpus/.
#include <fcntl.h>
#include <linux/fanotify.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr std::uint8_t kFid = 1;
constexpr std::uint8_t kDfidName = 2;
constexpr std::uint8_t kDfid = 3;
constexpr std::uint8_t kOldDfidName = 10;
constexpr std::uint8_t kNewDfidName = 12;
constexpr std::uint64_t kRename = 0x10000000;
constexpr unsigned kReportFid = 0x200;
constexpr unsigned kReportDirFid = 0x400;
constexpr unsigned kReportName = 0x800;
constexpr unsigned kReportTargetFid = 0x1000;

template <typename T>
void put(Bytes& out, T value) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

Bytes record(std::uint8_t type, const Bytes& handle, std::string_view name,
             bool named, std::uint64_t fsid = 0x1122334455667788ULL) {
  Bytes out;
  put<std::uint8_t>(out, type);
  put<std::uint8_t>(out, 0);
  put<std::uint16_t>(out, 0);
  put(out, fsid);
  put(out, static_cast<std::uint32_t>(handle.size()));
  put<std::int32_t>(out, 1);
  out.insert(out.end(), handle.begin(), handle.end());
  if (named) {
    out.insert(out.end(), name.begin(), name.end());
    out.push_back(0);
  }
  while (out.size() % 4 != 0) {
    out.push_back(0);
  }
  const auto len = static_cast<std::uint16_t>(out.size());
  std::memcpy(out.data() + 2, &len, sizeof(len));
  return out;
}

Bytes event(std::uint64_t mask, const std::vector<Bytes>& records,
            std::int32_t pid = 4242) {
  Bytes out;
  put<std::uint32_t>(out, 0);
  put<std::uint8_t>(out, FANOTIFY_METADATA_VERSION);
  put<std::uint8_t>(out, 0);
  put(out, static_cast<std::uint16_t>(sizeof(fanotify_event_metadata)));
  put<std::uint64_t>(out, mask);
  put<std::int32_t>(out, FAN_NOFD);
  put<std::int32_t>(out, pid);
  for (const Bytes& r : records) {
    out.insert(out.end(), r.begin(), r.end());
  }
  const auto len = static_cast<std::uint32_t>(out.size());
  std::memcpy(out.data(), &len, sizeof(len));
  return out;
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const Bytes& p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

bool save(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

int synth(const std::string& dir) {
  const Bytes dh = {0x0c, 0, 0, 0, 0xb6, 0x7d, 0xa4, 0x3d};
  const Bytes dh2 = {0x0d, 0, 0, 0, 0x01, 0x02, 0x03, 0x04};
  const Bytes fh = {0x21, 0x30, 0, 0, 0x99, 0x7e, 0x25, 0xe4};
  const Bytes tmpfs_h = {1, 0, 0, 0, 2, 0, 0, 0, 0x44, 0x33, 0x22, 0x11};
  Bytes long_h(40);
  for (std::size_t i = 0; i < long_h.size(); ++i) {
    long_h[i] = static_cast<std::uint8_t>(i * 7 + 1);
  }
  const std::string block = "0123456789abcdef.bin";
  const std::string temp = "0123456789abcdef.bin_12345.tmp";

  struct Seed {
    const char* name;
    Bytes bytes;
  };
  const std::vector<Seed> seeds = {
      {"synth-open-dfid-name",
       event(FAN_OPEN, {record(kDfidName, dh, block, true)})},
      {"synth-open-dfid-name-fid",
       event(
           FAN_OPEN | FAN_ACCESS | FAN_CLOSE_NOWRITE,
           {record(kDfidName, dh, block, true), record(kFid, fh, {}, false)})},
      {"synth-ondir-dot",
       event(FAN_OPEN | FAN_ONDIR, {record(kDfidName, dh, ".", true)})},
      {"synth-dfid-only",
       event(FAN_CLOSE_WRITE,
             {record(kDfid, dh, {}, false), record(kFid, fh, {}, false)})},
      {"synth-rename", event(kRename, {record(kOldDfidName, dh, temp, true),
                                       record(kNewDfidName, dh2, block, true),
                                       record(kFid, fh, {}, false)})},
      {"synth-create-delete-merged",
       event(FAN_CREATE | FAN_OPEN | FAN_DELETE,
             {record(kDfidName, tmpfs_h, temp, true)})},
      {"synth-overflow", event(FAN_Q_OVERFLOW, {}, 0)},
      {"synth-unknown-info",
       concat({event(FAN_OPEN, {record(kDfidName, dh, block, true),
                                record(42, dh, {}, false)}),
               event(FAN_ACCESS, {record(kDfidName, dh, "a", true)})})},
      {"synth-long-handle",
       event(FAN_CLOSE_NOWRITE, {record(kDfidName, long_h, "ab.bin", true)})},
      {"synth-many",
       concat({event(FAN_CREATE, {record(kDfidName, dh, temp, true)}),
               event(FAN_MOVED_FROM, {record(kDfidName, dh, temp, true)}),
               event(FAN_MOVED_TO, {record(kDfidName, dh, block, true)}),
               event(FAN_OPEN, {record(kDfidName, dh, block, true)}),
               event(FAN_DELETE, {record(kDfidName, dh, block, true)}),
               event(FAN_DELETE | FAN_ONDIR,
                     {record(kDfidName, dh2, "de_g0", true)})})},
      {"synth-odd-names",
       concat(
           {event(FAN_OPEN, {record(kDfidName, dh, "a\nb.bin", true)}),
            event(FAN_OPEN, {record(kDfidName, dh, "\xff\xfe.bin", true)}),
            event(FAN_OPEN, {record(kDfidName, dh,
                                    std::string(251, 'x') + ".bin", true)})})},
  };
  for (const Seed& s : seeds) {
    if (!save(dir + "/" + s.name, s.bytes)) {
      std::perror(s.name);
      return 1;
    }
  }
  std::printf("wrote %zu synthesized buffers to %s\n", seeds.size(),
              dir.c_str());
  return 0;
}

// Reads whatever the group has queued into `saved`, one read() per buffer.
void drain(int fd, std::vector<Bytes>& saved) {
  std::vector<std::uint8_t> buf(64 * 1024);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0) {
      return;
    }
    saved.emplace_back(buf.begin(), buf.begin() + n);
  }
}

int capture(const std::string& dir, const std::string& out_dir,
            const std::string& tag) {
  const std::uint64_t uses =
      FAN_OPEN | FAN_ACCESS | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
  const std::uint64_t entries = FAN_CREATE | FAN_DELETE | FAN_ONDIR;
  struct Level {
    const char* name;
    unsigned report;
    std::uint64_t mask;
  };
  const Level levels[] = {
      {"target-fid-rename",
       kReportDirFid | kReportName | kReportFid | kReportTargetFid,
       uses | entries | kRename},
      {"dfid-name-fid", kReportDirFid | kReportName | kReportFid,
       uses | entries | FAN_MOVED_FROM | FAN_MOVED_TO},
      {"dfid-name", kReportDirFid | kReportName,
       entries | FAN_MOVED_FROM | FAN_MOVED_TO},
  };
  int written = 0;
  for (const Level& level : levels) {
    const int fd = ::fanotify_init(
        FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | level.report,
        O_RDONLY | O_CLOEXEC | O_LARGEFILE);
    if (fd < 0) {
      std::fprintf(stderr, "fanotify_init (%s): %s\n", level.name,
                   std::strerror(errno));
      continue;
    }
    if (::fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, level.mask,
                        AT_FDCWD, dir.c_str()) != 0) {
      std::fprintf(stderr, "fanotify_mark (%s): %s\n", level.name,
                   std::strerror(errno));
      ::close(fd);
      continue;
    }
    std::vector<Bytes> saved;
    const std::string a = dir + "/abc";
    const std::string b = a + "/de_g0";
    const std::string final_path = b + "/abcde0123456789f.bin";
    const std::string temp_path = final_path + "_31337.tmp";
    ::mkdir(a.c_str(), 0755);
    ::mkdir(b.c_str(), 0755);
    int w = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (w >= 0) {
      const char data[4096] = {1};
      (void)!::write(w, data, sizeof(data));
      ::close(w);
    }
    ::rename(temp_path.c_str(), final_path.c_str());
    drain(fd, saved);
    for (int k = 0; k < 3; ++k) {
      const int r = ::open(final_path.c_str(), O_RDONLY);
      if (r >= 0) {
        char data[4096];
        (void)!::read(r, data, sizeof(data));
        ::close(r);
      }
    }
    const int d = ::open(b.c_str(), O_RDONLY | O_DIRECTORY);
    if (d >= 0) {
      ::close(d);
    }
    drain(fd, saved);
    ::unlink(final_path.c_str());
    ::rmdir(b.c_str());
    ::rmdir(a.c_str());
    drain(fd, saved);
    ::close(fd);
    for (std::size_t i = 0; i < saved.size(); ++i) {
      const std::string path =
          out_dir + "/real-" + tag + "-" + level.name + "-" + std::to_string(i);
      if (save(path, saved[i])) {
        ++written;
      }
    }
    std::printf("%s: %zu buffers\n", level.name, saved.size());
  }
  std::printf("wrote %d captured buffers to %s\n", written, out_dir.c_str());
  return written > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "synth") {
    return synth(args[1]);
  }
  if ((args.size() == 3 || args.size() == 4) && args[0] == "capture") {
    return capture(args[1], args[2], args.size() == 4 ? args[3] : "fs");
  }
  std::fprintf(stderr,
               "usage: make_corpus synth OUTDIR\n"
               "       make_corpus capture DIR OUTDIR [TAG]   (root)\n");
  return 2;
}
