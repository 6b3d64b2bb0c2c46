// libFuzzer target: the configuration parser, pvc::parse_settings.
//
// Two input formats:
// - Raw (so that a seed file is easy to write by hand):
//     arg NUL arg NUL ... NUL NUL NAME=VALUE NUL NAME=VALUE ...
//   Everything before the first empty field is the command line (without
//   the program name, as main() passes it); everything after it is the
//   environment. An environment field without '=' is a variable set to "".
// - Structured, when the first byte is 0x01: the rest is read with
//   FuzzedDataProvider as a list of (known flag or variable, value) pairs,
//   the values drawn from numbers over the whole range of a double (as
//   integers, decimals and exponents), the keywords the parser knows, and
//   arbitrary strings. Byte mutations alone rarely turn "3600" into a
//   number with ten digits; this reaches every range check at once.
//
// Beyond "does not crash, leak or invoke undefined behaviour", a result
// that says "run" must hold settings the daemon can use as they are:
// - thresholds within 0..100 and ordered (target < cleanup <= emergency,
//   inode target < inode cleanup unless inode limits are off);
// - a crawler count the partition accepts, a batch size of at least one,
//   a bucket width of 0, 2, 3 or 4, a positive poll interval;
// - an absolute mount path and dump directory, a relative cache directory
//   without a ".." component;
// - every duration converts to nanoseconds (pvc::seconds_to_ns, as the
//   daemon does at start-up) without overflowing: UndefinedBehaviorSanitizer
//   reports float-cast-overflow, and the explicit range check below reports
//   it in builds without that sanitizer.
// A result that says "exit" carries a message, and exit code 0 only for
// --help and --version.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "config/parse.hpp"
#include "crawl/partition.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "parse_settings invariant broken: %s %s\n", what,
               detail.c_str());
  std::abort();
}

// What run_daemon does with a duration in seconds (see evictor_config in
// src/daemon/daemon.cpp): seconds_to_ns. The result must fit in TimeNs.
void check_duration(const char* name, double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) {
    fail("a duration is not a finite non-negative number:", name);
  }
  // 2^63 ns is about 292 years.
  constexpr double kLimit = 9.2e18 / static_cast<double>(pvc::kNsPerSecond);
  const pvc::TimeNs ns = pvc::seconds_to_ns(seconds);  // UBSan checks this
  if (seconds >= kLimit || ns < 0) {
    fail("a duration overflows TimeNs when converted to nanoseconds:",
         std::string(name) + " = " + std::to_string(seconds) + " s");
  }
}

void check_percent(const char* name, double v) {
  if (!(v >= 0 && v <= 100)) {
    fail("a threshold outside 0..100:", name);
  }
}

void check_settings(const pvc::Settings& s) {
  check_percent("cleanup", s.cleanup_threshold);
  check_percent("target", s.target_threshold);
  check_percent("inode cleanup", s.inode_cleanup_threshold);
  check_percent("inode target", s.inode_target_threshold);
  check_percent("emergency", s.emergency_threshold);
  if (!(s.target_threshold < s.cleanup_threshold)) {
    fail("target not below cleanup");
  }
  if (!(s.cleanup_threshold <= s.emergency_threshold)) {
    fail("emergency below cleanup");
  }
  if (s.inode_cleanup_threshold > 0 &&
      !(s.inode_target_threshold < s.inode_cleanup_threshold)) {
    fail("inode target not below inode cleanup");
  }
  if (!pvc::valid_crawler_count(s.crawlers)) {
    fail("crawler count the partition refuses");
  }
  if (s.batch_size < 1) {
    fail("batch size 0");
  }
  if (s.hex_bucket_len != 0 && (s.hex_bucket_len < 2 || s.hex_bucket_len > 4)) {
    fail("bucket width not 0, 2, 3 or 4");
  }
  if (!(s.interval_seconds > 0) || !std::isfinite(s.interval_seconds)) {
    fail("poll interval not positive");
  }
  if (s.mount_path.empty() || s.mount_path[0] != '/') {
    fail("mount path not absolute");
  }
  if (s.dump_dir.empty() || s.dump_dir[0] != '/') {
    fail("dump dir not absolute");
  }
  if (!s.cache_dir.empty() && s.cache_dir[0] == '/') {
    fail("cache dir absolute");
  }
  for (std::size_t b = 0; b <= s.cache_dir.size();) {
    std::size_t e = s.cache_dir.find('/', b);
    e = e == std::string::npos ? s.cache_dir.size() : e;
    if (std::string_view(s.cache_dir).substr(b, e - b) == "..") {
      fail("cache dir with a '..' component:", s.cache_dir);
    }
    b = e + 1;
  }
  // The conversions run_daemon makes (src/daemon/daemon.cpp).
  check_duration("--hot-minutes", s.hot_minutes * 60);
  check_duration("--dir-cleanup-ttl", s.dir_cleanup_ttl_seconds);
  check_duration("--temp-max-age-minutes", s.temp_max_age_minutes * 60);
  check_duration("--usage-log-interval", s.usage_log_interval_seconds);
  check_duration("--interval", s.interval_seconds);
  // The start-up line must be printable for any accepted settings.
  const std::string line = pvc::describe(s);
  if (line.find("cache_root=") == std::string::npos) {
    fail("describe() lost a field");
  }
  (void)s.cache_root();
}

void check_result(const pvc::ParseResult& r) {
  if (r.status == pvc::ParseStatus::kRun) {
    if (r.exit_code != 0) {
      fail("run with a non-zero exit code");
    }
    check_settings(r.settings);
    return;
  }
  if (r.message.empty()) {
    fail("exit without a message");
  }
  if (r.exit_code == 0 && r.message.find("pvc-evictor") == std::string::npos) {
    fail("exit code 0 for something other than --help or --version:",
         r.message.substr(0, 200));
  }
}

struct Setting {
  const char* flag;
  const char* env;
};

constexpr std::array<Setting, 30> kSettings = {{
    {"--mount-path", "PVC_MOUNT_PATH"},
    {"--cache-dir", "CACHE_DIRECTORY"},
    {"--cleanup-threshold", "CLEANUP_THRESHOLD"},
    {"--target-threshold", "TARGET_THRESHOLD"},
    {"--inode-cleanup-threshold", "INODE_CLEANUP_THRESHOLD"},
    {"--inode-target-threshold", "INODE_TARGET_THRESHOLD"},
    {"--emergency-threshold", "EMERGENCY_THRESHOLD"},
    {"--hot-minutes", "FILE_ACCESS_TIME_THRESHOLD_MINUTES"},
    {"--crawlers", "NUM_CRAWLER_PROCESSES"},
    {"--interval", "LOGGER_INTERVAL_SECONDS"},
    {"--batch-size", "DELETION_BATCH_SIZE"},
    {"--hex-bucket-len", "HEX_BUCKET_LEN"},
    {"--dir-cleanup", "ENABLE_DIR_CLEANUP"},
    {"--dir-cleanup-ttl", "DIR_CLEANUP_TTL_SECONDS"},
    {"--temp-max-age-minutes", "TEMP_FILE_MAX_AGE_MINUTES"},
    {"--rescan-interval", "RESCAN_INTERVAL_SECONDS"},
    {"--max-cache-bytes", "MAX_CACHE_BYTES"},
    {"--mount-wait", "MOUNT_WAIT_SECONDS"},
    {"--usage-log-interval", "USAGE_LOG_INTERVAL_SECONDS"},
    {"--dry-run", "DRY_RUN"},
    {"--log-level", "LOG_LEVEL"},
    {"--log-file", "LOG_FILE_PATH"},
    {"--mode", "EVICTOR_MODE"},
    {"--metrics-address", "METRICS_ADDRESS"},
    {"--probe-report", "PROBE_REPORT"},
    {"--events-endpoint", "STORAGE_EVENTS_ENDPOINT"},
    {"--dump-dir", "DUMP_DIR"},
    {"--help", "FILE_QUEUE_MAXSIZE"},
    {"--version", "FILE_QUEUE_MIN_SIZE"},
    {"--no-such-flag", "TIMING_FILE_PATH"},
}};

constexpr std::array<const char*, 24> kWords = {"true",
                                                "false",
                                                "yes",
                                                "off",
                                                "auto",
                                                "watch",
                                                "crawl",
                                                "debug",
                                                "warn",
                                                "/kv-cache",
                                                "kv/model-cache/models",
                                                "../x",
                                                ":9100",
                                                "0.0.0.0:65536",
                                                "tcp://*:5557",
                                                "ipc:///run/x",
                                                "500Gi",
                                                "1.5TiB",
                                                "16P",
                                                "nan",
                                                "inf",
                                                "-0",
                                                " 7 ",
                                                ""};

std::string number(FuzzedDataProvider& fdp) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      return std::to_string(fdp.ConsumeIntegral<std::int64_t>());
    case 1:
      return std::to_string(fdp.ConsumeIntegralInRange<int>(-5, 120));
    case 2: {
      const int mantissa = fdp.ConsumeIntegralInRange<int>(1, 99);
      const int exponent = fdp.ConsumeIntegralInRange<int>(-3, 14);
      return std::to_string(mantissa) + "e" + std::to_string(exponent);
    }
    default: {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%.17g",
                    fdp.ConsumeFloatingPoint<double>());
      return buf;
    }
  }
}

void structured(FuzzedDataProvider& fdp, std::vector<std::string>& args,
                pvc::Environment& env) {
  const int n = fdp.ConsumeIntegralInRange<int>(1, 6);
  for (int i = 0; i < n && fdp.remaining_bytes() > 0; ++i) {
    const Setting& s = fdp.PickValueInArray(kSettings);
    std::string value;
    switch (fdp.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
      case 1:
        value = number(fdp);
        break;
      case 2:
        value = fdp.PickValueInArray(kWords);
        break;
      default:
        value = fdp.ConsumeRandomLengthString(64);
        break;
    }
    switch (fdp.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        args.emplace_back(s.flag);
        args.push_back(value);
        break;
      case 1:
        args.push_back(std::string(s.flag) + "=" + value);
        break;
      default:
        env[s.env] = value;
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  std::vector<std::string> args;
  pvc::Environment env;
  if (size > 0 && data[0] == 0x01) {
    FuzzedDataProvider fdp(data + 1, size - 1);
    structured(fdp, args, env);
    check_result(pvc::parse_settings(args, env));
    return 0;
  }

  std::vector<std::string> fields;
  std::string current;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      fields.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  fields.push_back(std::move(current));

  bool in_env = false;
  for (std::string& f : fields) {
    if (!in_env) {
      if (f.empty()) {
        in_env = true;
      } else {
        args.push_back(std::move(f));
      }
      continue;
    }
    const auto eq = f.find('=');
    if (eq == std::string::npos) {
      env[f] = "";
    } else {
      env[f.substr(0, eq)] = f.substr(eq + 1);
    }
  }

  check_result(pvc::parse_settings(args, env));
  return 0;
}
