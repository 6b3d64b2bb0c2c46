// A reader that opens, reads and closes many distinct cache files as fast
// as it can, for the end-to-end event benchmark: run it with and without
// the daemon in watch mode and compare its cost per file, while the daemon
// counts the events the kernel delivered.
//
//   reader_bench --root R --count N [--bytes 4096] [--passes P]
//
// Lists up to N "*.bin" files below R (not timed), then times P passes of
// open(O_RDONLY) + read(bytes) + close over them. Prints one JSON object
// with the best pass (least CPU) and the mean.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace {

void list(const std::string& dir, std::size_t limit,
          std::vector<std::string>& out) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return;
  }
  std::vector<std::string> subdirs;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    if (e->d_type == DT_DIR) {
      subdirs.push_back(dir + "/" + name);
    } else if (e->d_type == DT_REG && name.size() > 4 &&
               name.compare(name.size() - 4, 4, ".bin") == 0) {
      if (out.size() < limit) {
        out.push_back(dir + "/" + name);
      }
    }
  }
  ::closedir(d);
  for (const auto& s : subdirs) {
    if (out.size() >= limit) {
      return;
    }
    list(s, limit, out);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pvc::bench;
  const Args args(argc, argv, {"--root", "--count", "--bytes", "--passes"}, {});
  const std::string root = args.str("--root");
  const std::size_t count = args.num("--count", 100000);
  const std::size_t bytes = args.num("--bytes", 4096);
  const std::uint64_t passes = args.num("--passes", 1);
  if (root.empty()) {
    std::fprintf(stderr, "usage: reader_bench --root R --count N\n");
    return 2;
  }
  std::vector<std::string> paths;
  list(root, count, paths);
  if (paths.empty()) {
    std::fprintf(stderr, "reader_bench: no *.bin files below %s\n",
                 root.c_str());
    return 1;
  }
  std::vector<char> buf(bytes);
  double best_cpu = 1e300;
  double best_wall = 0;
  double sum_cpu = 0;
  double sum_wall = 0;
  std::uint64_t failures = 0;
  for (std::uint64_t p = 0; p < passes; ++p) {
    const CpuTimes c0 = cpu_now();
    const double w0 = wall_now();
    for (const std::string& path : paths) {
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        ++failures;
        continue;
      }
      if (::read(fd, buf.data(), buf.size()) < 0) {
        ++failures;
      }
      ::close(fd);
    }
    const double wall = wall_now() - w0;
    const double cpu = cpu_now().total() - c0.total();
    sum_cpu += cpu;
    sum_wall += wall;
    if (cpu < best_cpu) {
      best_cpu = cpu;
      best_wall = wall;
    }
  }
  const double n = static_cast<double>(paths.size());
  Json j;
  j.str("bench", "reader")
      .integer("files", paths.size())
      .integer("passes", passes)
      .integer("failures", failures)
      .num("seconds", sum_wall / static_cast<double>(passes))
      .num("ops_per_s", n * static_cast<double>(passes) / sum_wall)
      .num("cpu_ns_per_op", sum_cpu / static_cast<double>(passes) / n * 1e9)
      .num("best_cpu_ns_per_op", best_cpu / n * 1e9)
      .num("best_wall_ns_per_op", best_wall / n * 1e9);
  std::printf("%s\n", j.done().c_str());
  return failures == 0 ? 0 : 1;
}
