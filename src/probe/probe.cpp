#include "probe/probe.hpp"

#include <cap-ng.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "probe/atime_probe.hpp"
#include "watch/fanotify_group.hpp"
#include "watch/fs_kind.hpp"
#include "watch/self_check.hpp"

namespace pvc {
namespace {

constexpr const char* kQueueSysctl = "/proc/sys/fs/fanotify/max_queued_events";
// Kernel memory per queued event, roughly; for the report's sizing note.
constexpr std::uint64_t kBytesPerQueuedEvent = 110;

struct MountInfo {
  bool found = false;
  std::string mount_point;
  std::string options;  // per-mount options: rw, relatime, ...
  std::string fstype;
  std::string source;
};

std::string unescape_mountinfo(const std::string& s) {
  // mountinfo writes space, tab, newline and backslash as \ooo (octal).
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() + 1 &&
        s.substr(i + 1, 3).find_first_not_of("01234567") == std::string::npos &&
        s.substr(i + 1, 3).size() == 3) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8));
      i += 3;
      continue;
    }
    out += s[i];
  }
  return out;
}

// The mount that holds `path`: the longest mount point that prefixes it.
MountInfo mount_of(const std::string& path) {
  MountInfo best;
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) {
    return best;
  }
  const std::string target(resolved);
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, options;
    f >> id >> parent >> dev >> root >> point >> options;
    std::string field;
    while (f >> field && field != "-") {
    }
    std::string fstype, source;
    f >> fstype >> source;
    point = unescape_mountinfo(point);
    const bool prefix =
        target == point || (target.starts_with(point) &&
                            (point == "/" || target[point.size()] == '/'));
    if (prefix && point.size() >= best.mount_point.size()) {
      best = {true, point, options, fstype, source};
    }
  }
  return best;
}

std::string declared_atime(const std::string& options) {
  for (const char* o : {"noatime", "strictatime", "relatime"}) {
    if (("," + options + ",").find(std::string(",") + o + ",") !=
        std::string::npos) {
      return o;
    }
  }
  // No flag listed means the kernel's default for new mounts: relatime,
  // unless the mount was made with strictatime (which mountinfo omits).
  return "strictatime or default";
}

std::uint64_t read_queue_size(int& err) {
  std::ifstream in(kQueueSysctl);
  std::uint64_t v = 0;
  if (!(in >> v)) {
    err = errno != 0 ? errno : ENOENT;
    return 0;
  }
  err = 0;
  return v;
}

nlohmann::json probe_mount(const std::string& path, bool& usable) {
  nlohmann::json j;
  j["path"] = escape_bytes(path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    j["usable"] = false;
    j["error"] = sys_message("stat", path, errno != 0 ? errno : ENOTDIR);
    usable = false;
    return j;
  }
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) {
    j["usable"] = false;
    j["error"] = sys_message("statvfs", path, errno);
    usable = false;
    return j;
  }
  const std::uint64_t unit = v.f_frsize != 0 ? v.f_frsize : v.f_bsize;
  const std::uint64_t used = (v.f_blocks - v.f_bfree) * unit;
  const std::uint64_t avail = v.f_bavail * unit;
  j["capacity_bytes"] = v.f_blocks * unit;
  j["used_bytes"] = used;
  j["available_bytes"] = avail;
  j["usage_percent"] = used + avail == 0
                           ? 0.0
                           : 100.0 * static_cast<double>(used) /
                                 static_cast<double>(used + avail);
  j["inodes_total"] = v.f_files;
  j["inodes_used"] = v.f_files - v.f_ffree;
  j["inode_percent"] =
      v.f_files == 0 ? 0.0
                     : 100.0 * static_cast<double>(v.f_files - v.f_ffree) /
                           static_cast<double>(v.f_files);
  j["read_only"] = (v.f_flag & ST_RDONLY) != 0;
  j["writable"] =
      ::access(path.c_str(), W_OK) == 0 && (v.f_flag & ST_RDONLY) == 0;
  int err = 0;
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const FsKind kind = fd ? fs_kind_of(fd.get(), err) : FsKind{};
  j["filesystem"] = std::string(kind.name);
  j["filesystem_magic"] = kind.magic;
  const MountInfo m = mount_of(path);
  if (m.found) {
    j["mount_point"] = escape_bytes(m.mount_point);
    j["mount_options"] = m.options;
    j["mount_fstype"] = m.fstype;
    j["mount_source"] = escape_bytes(m.source);
    j["atime_option"] = declared_atime(m.options);
  }
  j["usable"] = true;
  return j;
}

nlohmann::json probe_fanotify(const std::string& path) {
  nlohmann::json j;
  int err = 0;
  std::string detail;
  FanotifyGroup group = FanotifyGroup::open(path, err, detail);
  std::string why;
  if (group.valid() && !watch_self_check(group, path, why)) {
    j["available"] = false;
    j["reason"] = "the mark was accepted but the self-check failed: " + why;
    return j;
  }
  if (!group.valid()) {
    j["available"] = false;
    j["errno"] = err;
    j["errno_name"] =
        err != 0 && strerrorname_np(err) != nullptr ? strerrorname_np(err) : "";
    j["reason"] = detail;
    return j;
  }
  j["available"] = true;
  j["level"] = std::string(watch_level_name(group.level()));
  j["refused_levels"] = detail;
  j["events_may_be_incomplete"] = group.events_may_be_incomplete();
  return j;
}

nlohmann::json raise_queue(std::uint64_t wanted) {
  nlohmann::json j;
  int err = 0;
  const std::uint64_t before = read_queue_size(err);
  j["requested"] = wanted;
  j["before"] = before;
  if (before >= wanted) {
    j["changed"] = false;
    j["note"] = "already at least the requested size";
    return j;
  }
  std::ofstream out(kQueueSysctl);
  out << wanted << '\n';
  out.flush();
  const std::uint64_t after = read_queue_size(err);
  j["after"] = after;
  j["changed"] = after == wanted;
  if (after != wanted) {
    j["error"] = "cannot write " + std::string(kQueueSysctl) +
                 " (needs a privileged container; the setting is "
                 "node-wide)";
  }
  return j;
}

nlohmann::json try_strictatime(const std::string& path,
                               const std::string& measure_dir) {
  nlohmann::json j;
  j["path"] = escape_bytes(path);
  struct statvfs v {};
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_STRICTATIME;
  if (::statvfs(path.c_str(), &v) == 0) {
    // A bind remount must restate the lock flags it keeps.
    if ((v.f_flag & ST_RDONLY) != 0)
      flags |= MS_RDONLY;
    if ((v.f_flag & ST_NOSUID) != 0)
      flags |= MS_NOSUID;
    if ((v.f_flag & ST_NODEV) != 0)
      flags |= MS_NODEV;
    if ((v.f_flag & ST_NOEXEC) != 0)
      flags |= MS_NOEXEC;
  }
  if (::mount(nullptr, path.c_str(), nullptr, flags, nullptr) != 0) {
    j["remounted"] = false;
    j["error"] = sys_message("mount -o remount,strictatime", path, errno);
  } else {
    j["remounted"] = true;
    const AtimeProbe after = probe_atime(measure_dir);
    j["atime_after"] = atime_behaviour_name(after.behaviour);
  }
  j["note"] =
      "a remount changes this pod's mount only: reads by vLLM through its "
      "own mount keep their atime behaviour. For trustworthy atime set "
      "strictatime in the PersistentVolume's or StorageClass's mountOptions "
      "before the reading pods start, or use watch mode";
  return j;
}

}  // namespace

int run_probe(const std::vector<std::string>& args) {
  CLI::App app{
      "Reports what this volume and pod allow pvc-evictor to do: "
      "the mount, fanotify, atime behaviour, the queue size.",
      "pvc-evictor probe"};
  std::string mount_path = "/kv-cache";
  std::string cache_dir;
  std::string output;
  std::uint64_t raise = 0;
  bool strictatime = false;
  app.add_option("--mount-path", mount_path,
                 "the volume's mount path (default /kv-cache)")
      ->envname("PVC_MOUNT_PATH");
  app.add_option("--cache-dir", cache_dir,
                 "cache directory relative to the mount path, where the "
                 "atime probe file is written if it exists")
      ->envname("CACHE_DIRECTORY");
  app.add_option("--output", output, "also write the report to this file");
  app.add_option("--raise-queue", raise,
                 "raise fs.fanotify.max_queued_events to this size "
                 "(node-wide; needs a privileged container)");
  app.add_flag("--try-strictatime", strictatime,
               "try a strictatime remount of the mount path and measure "
               "again (changes this pod's view only)");
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  nlohmann::json report;
  report["version"] = PVC_EVICTOR_VERSION;
  bool usable = true;
  report["mount"] = probe_mount(mount_path, usable);
  capng_get_caps_process();
  report["privileges"] = {
      {"euid", ::geteuid()},
      {"cap_sys_admin",
       capng_have_capability(CAPNG_EFFECTIVE, CAP_SYS_ADMIN) != 0}};
  if (usable) {
    if (raise != 0) {
      report["queue_raise"] = raise_queue(raise);
    }
    report["fanotify"] = probe_fanotify(mount_path);
    int err = 0;
    const std::uint64_t queue = read_queue_size(err);
    report["fanotify"]["queue_events"] = queue;
    report["fanotify"]["queue_kernel_bytes_when_full"] =
        queue * kBytesPerQueuedEvent;

    std::string measure_dir = mount_path;
    const std::string cache = mount_path + "/" + cache_dir;
    struct stat st {};
    if (!cache_dir.empty() && ::stat(cache.c_str(), &st) == 0 &&
        S_ISDIR(st.st_mode)) {
      measure_dir = cache;
    }
    const AtimeProbe atime = probe_atime(measure_dir);
    report["atime"] = {{"behaviour", atime_behaviour_name(atime.behaviour)},
                       {"detail", atime.detail},
                       {"measured_in", escape_bytes(measure_dir)}};
    if (strictatime) {
      report["strictatime_remount"] = try_strictatime(mount_path, measure_dir);
    }
    const bool watch = report["fanotify"].value("available", false);
    const std::string behaviour = atime_behaviour_name(atime.behaviour);
    nlohmann::json notes = nlohmann::json::array();
    if (!watch && behaviour != "strictatime") {
      notes.push_back(
          "crawl mode on " + behaviour +
          ": a file read continuously can look cold; use watch mode or set "
          "strictatime in the PV or StorageClass mountOptions");
    }
    report["verdict"] = {{"usable", true},
                         {"recommended_mode", watch ? "watch" : "crawl"},
                         {"notes", notes}};
  } else {
    report["verdict"] = {{"usable", false},
                         {"recommended_mode", nullptr},
                         {"notes", {"the volume is not usable"}}};
  }

  const std::string text = report.dump(2);
  std::printf("%s\n", text.c_str());
  if (!output.empty()) {
    std::ofstream out(output);
    out << text << '\n';
    if (!out) {
      std::fprintf(stderr, "pvc-evictor probe: cannot write %s\n",
                   output.c_str());
      return 1;
    }
  }
  return usable ? 0 : 1;
}

ProbeFindings read_probe_report(const std::string& path, std::string& error) {
  ProbeFindings f;
  std::ifstream in(path);
  if (!in) {
    error = sys_message("open", path, errno);
    return f;
  }
  f.report = nlohmann::json::parse(in, nullptr, false);
  if (f.report.is_discarded() || !f.report.is_object()) {
    error = "not a probe report (invalid JSON)";
    return f;
  }
  f.loaded = true;
  if (f.report.contains("fanotify")) {
    f.fanotify_available = f.report["fanotify"].value("available", true);
    f.fanotify_reason = f.report["fanotify"].value("reason", "");
  }
  if (f.report.contains("atime")) {
    f.atime_behaviour = f.report["atime"].value("behaviour", "");
  }
  return f;
}

}  // namespace pvc
