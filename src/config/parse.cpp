#include "config/parse.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <optional>

#include "common/join_path.hpp"
#include "crawl/partition.hpp"

extern char** environ;  // NOLINT: POSIX declares it nowhere else

namespace pvc {
namespace {

// One setting: its flag, its variable, and how its text becomes a value.
// `apply` returns an empty string on success or what is allowed.
struct Option {
  std::string flag;
  std::string env;
  std::string help;
  std::function<std::string(const std::string&, Settings&)> apply;
  bool is_flag = false;  // a boolean that may be given without a value
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) {
    return {};
  }
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::optional<double> to_number(const std::string& text) {
  const std::string t = trim(text);
  double value = 0;
  const auto* end = t.data() + t.size();
  const auto [ptr, ec] = std::from_chars(t.data(), end, value);
  if (t.empty() || ec != std::errc() || ptr != end || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> to_bool(const std::string& text) {
  const std::string t = lower(trim(text));
  if (t == "true" || t == "1" || t == "yes" || t == "on") {
    return true;
  }
  if (t == "false" || t == "0" || t == "no" || t == "off" || t.empty()) {
    return false;
  }
  return std::nullopt;
}

// "100", "512Mi", "10G", "1.5TiB": powers of 1024.
std::optional<std::uint64_t> to_bytes(const std::string& text) {
  std::string t = lower(trim(text));
  const auto unit_at = t.find_first_not_of("0123456789.");
  std::string unit = unit_at == std::string::npos ? "" : t.substr(unit_at);
  const auto number = to_number(t.substr(0, unit_at));
  if (!number || *number < 0) {
    return std::nullopt;
  }
  if (unit.ends_with("ib")) {
    unit.resize(unit.size() - 2);
  } else if (unit.ends_with("i") || (unit.size() == 2 && unit[1] == 'b')) {
    unit.resize(unit.size() - 1);
  }
  static const std::string kUnits = "kmgtp";
  double scale = 1;
  if (unit == "b") {
    unit.clear();
  }
  if (!unit.empty()) {
    const auto pos = kUnits.find(unit);
    if (unit.size() != 1 || pos == std::string::npos) {
      return std::nullopt;
    }
    scale = std::pow(1024.0, static_cast<double>(pos + 1));
  }
  const double bytes = *number * scale;
  if (bytes > 1.8e19) {
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(bytes);
}

auto number_in(double Settings::*field, double min, double max,
               bool min_open = false) {
  return [=](const std::string& text, Settings& s) -> std::string {
    const auto v = to_number(text);
    const bool ok = v && (min_open ? *v > min : *v >= min) && *v <= max;
    if (!ok) {
      return fmt::format("a number {} {} and at most {}",
                         min_open ? "above" : "from", min, max);
    }
    s.*field = *v;
    return {};
  };
}

auto whole_in(unsigned Settings::*field, unsigned min, unsigned max) {
  return [=](const std::string& text, Settings& s) -> std::string {
    const auto v = to_number(text);
    if (!v || *v != std::floor(*v) || *v < min || *v > max) {
      return fmt::format("a whole number from {} to {}", min, max);
    }
    s.*field = static_cast<unsigned>(*v);
    return {};
  };
}

auto boolean(bool Settings::*field) {
  return [=](const std::string& text, Settings& s) -> std::string {
    const auto v = to_bool(text);
    if (!v) {
      return "true or false (also 1/0, yes/no, on/off)";
    }
    s.*field = *v;
    return {};
  };
}

std::vector<Option> options() {
  // Durations above ten years are "never" for any purpose; the limit also
  // keeps every duration clear of overflow when the daemon converts it to
  // nanoseconds (2^63 ns is 292 years).
  constexpr double kMaxSeconds = 10 * 365.25 * 24 * 3600;
  constexpr double kMaxMinutes = kMaxSeconds / 60;
  return {
      {"--mount-path", "PVC_MOUNT_PATH",
       "where the volume is mounted (default /kv-cache)",
       [](const std::string& t, Settings& s) -> std::string {
         if (t.empty() || t[0] != '/') {
           return "an absolute path";
         }
         s.mount_path = t;
         return {};
       }},
      {"--cache-dir", "CACHE_DIRECTORY",
       "cache directory relative to the mount path (default "
       "kv/model-cache/models)",
       [](const std::string& t, Settings& s) -> std::string {
         if (!t.empty() && t[0] == '/') {
           return "a path relative to the mount path";
         }
         for (std::size_t b = 0; b <= t.size();) {
           auto e = t.find('/', b);
           e = e == std::string::npos ? t.size() : e;
           if (t.compare(b, e - b, "..") == 0) {
             return "a path below the mount path (no '..')";
           }
           b = e + 1;
         }
         s.cache_dir = t;
         return {};
       }},
      {"--cleanup-threshold", "CLEANUP_THRESHOLD",
       "byte usage percent that starts an episode (default 85)",
       number_in(&Settings::cleanup_threshold, 0, 100, true)},
      {"--target-threshold", "TARGET_THRESHOLD",
       "byte usage percent an episode ends at (default 70)",
       number_in(&Settings::target_threshold, 0, 100)},
      {"--inode-cleanup-threshold", "INODE_CLEANUP_THRESHOLD",
       "inode usage percent that starts an episode; 0 turns inode limits off "
       "(default 85)",
       number_in(&Settings::inode_cleanup_threshold, 0, 100)},
      {"--inode-target-threshold", "INODE_TARGET_THRESHOLD",
       "inode usage percent an episode ends at (default 70)",
       number_in(&Settings::inode_target_threshold, 0, 100)},
      {"--emergency-threshold", "EMERGENCY_THRESHOLD",
       "usage percent above which recently used files may be deleted too, "
       "oldest first (default 95)",
       number_in(&Settings::emergency_threshold, 0, 100, true)},
      {"--hot-minutes", "FILE_ACCESS_TIME_THRESHOLD_MINUTES",
       "files used within this many minutes are not deleted (default 60)",
       number_in(&Settings::hot_minutes, 0, kMaxMinutes)},
      {"--crawlers", "NUM_CRAWLER_PROCESSES",
       "crawler threads: 1, 2, 4, 8 or 16 (default 8)",
       [](const std::string& t, Settings& s) -> std::string {
         const auto v = to_number(t);
         if (!v || *v != std::floor(*v) || *v < 1 || *v > 16 ||
             !valid_crawler_count(static_cast<unsigned>(*v))) {
           return "one of 1, 2, 4, 8, 16";
         }
         s.crawlers = static_cast<unsigned>(*v);
         return {};
       }},
      {"--interval", "LOGGER_INTERVAL_SECONDS",
       "seconds between usage checks (default 0.5)",
       number_in(&Settings::interval_seconds, 0.01, 3600)},
      {"--batch-size", "DELETION_BATCH_SIZE",
       "files deleted between two usage checks (default 100)",
       whole_in(&Settings::batch_size, 1, 100000)},
      {"--hex-bucket-len", "HEX_BUCKET_LEN",
       "width of first-level bucket names; 0 accepts 2 to 4 (default 0)",
       [](const std::string& t, Settings& s) -> std::string {
         const auto v = to_number(t);
         if (!v || (*v != 0 && *v != 2 && *v != 3 && *v != 4)) {
           return "one of 0 (any of 2 to 4), 2, 3, 4";
         }
         s.hex_bucket_len = static_cast<unsigned>(*v);
         return {};
       }},
      {"--dir-cleanup", "ENABLE_DIR_CLEANUP",
       "remove emptied bucket directories (default true)",
       boolean(&Settings::dir_cleanup), true},
      {"--dir-cleanup-ttl", "DIR_CLEANUP_TTL_SECONDS",
       "an empty bucket directory is removed only when unchanged for this "
       "many seconds (default 120)",
       number_in(&Settings::dir_cleanup_ttl_seconds, 0, kMaxSeconds)},
      {"--temp-max-age-minutes", "TEMP_FILE_MAX_AGE_MINUTES",
       "writer temp files unchanged for this long are orphans and are "
       "deleted; 0 never deletes them (default 60)",
       number_in(&Settings::temp_max_age_minutes, 0, kMaxMinutes)},
      {"--rescan-interval", "RESCAN_INTERVAL_SECONDS",
       "seconds between full crawls (default 300)",
       number_in(&Settings::rescan_interval_seconds, 1, kMaxSeconds)},
      {"--max-cache-bytes", "MAX_CACHE_BYTES",
       "byte budget for the cache (e.g. 500Gi); usage is then the cache's "
       "own bytes over it; 0 uses the whole volume (default 0)",
       [](const std::string& t, Settings& s) -> std::string {
         const auto v = to_bytes(t);
         if (!v) {
           return "a byte count, optionally with K, M, G, T, P (powers of "
                  "1024, e.g. 500Gi)";
         }
         s.max_cache_bytes = *v;
         return {};
       }},
      {"--mount-wait", "MOUNT_WAIT_SECONDS",
       "seconds to wait for the mount path at start (default 60)",
       number_in(&Settings::mount_wait_seconds, 0, kMaxSeconds)},
      {"--usage-log-interval", "USAGE_LOG_INTERVAL_SECONDS",
       "seconds between CACHE_PERCENT_LOG lines while idle; every check is "
       "logged during an episode (default 60)",
       number_in(&Settings::usage_log_interval_seconds, 0, kMaxSeconds)},
      {"--dry-run", "DRY_RUN", "delete nothing; log what would go",
       boolean(&Settings::dry_run), true},
      {"--log-level", "LOG_LEVEL",
       "debug, info, warning or error (default info)",
       [](const std::string& t, Settings& s) -> std::string {
         std::string l = lower(trim(t));
         if (l == "warn") {
           l = "warning";
         }
         if (l != "trace" && l != "debug" && l != "info" && l != "warning" &&
             l != "error" && l != "critical") {
           return "one of debug, info, warning, error";
         }
         s.log_level = l;
         return {};
       }},
      {"--log-file", "LOG_FILE_PATH", "also write the log to this file",
       [](const std::string& t, Settings& s) -> std::string {
         s.log_file = t;
         return {};
       }},
      {"--mode", "EVICTOR_MODE",
       "auto, watch or crawl: watch follows fanotify events and needs "
       "CAP_SYS_ADMIN at start, crawl relies on atime; auto (the default) "
       "uses watch mode when it works and crawl mode otherwise",
       [](const std::string& t, Settings& s) -> std::string {
         const std::string m = lower(trim(t));
         if (m == "auto") {
           s.mode = Mode::kAuto;
         } else if (m == "watch") {
           s.mode = Mode::kWatch;
         } else if (m == "crawl") {
           s.mode = Mode::kCrawl;
         } else {
           return "one of auto, watch, crawl";
         }
         return {};
       }},
      {"--metrics-address", "METRICS_ADDRESS",
       "host:port for /metrics, /healthz, /readyz and /debug/*, e.g. "
       "0.0.0.0:9100; empty turns the HTTP endpoint off (default empty)",
       [](const std::string& t, Settings& s) -> std::string {
         const std::string v = trim(t);
         const auto colon = v.rfind(':');
         const auto port = colon == std::string::npos
                               ? std::nullopt
                               : to_number(v.substr(colon + 1));
         if (!v.empty() && (!port || *port < 0 || *port > 65535 ||
                            *port != std::floor(*port))) {
           return "host:port (e.g. 0.0.0.0:9100 or :9100), or empty for off";
         }
         s.metrics_address = v;
         return {};
       }},
      {"--probe-report", "PROBE_REPORT",
       "the report `pvc-evictor probe` wrote (init container); logged at "
       "start and used by --mode auto (default none)",
       [](const std::string& t, Settings& s) -> std::string {
         s.probe_report = t;
         return {};
       }},
      {"--events-endpoint", "STORAGE_EVENTS_ENDPOINT",
       "bind a ZeroMQ PUB socket here (e.g. tcp://*:5557) and publish an "
       "llm-d BlockRemoved event for every deleted block; empty is off "
       "(default empty)",
       [](const std::string& t, Settings& s) -> std::string {
         const std::string v = trim(t);
         if (!v.empty() && !v.starts_with("tcp://") &&
             !v.starts_with("ipc://")) {
           return "a ZeroMQ endpoint to bind, such as tcp://*:5557 or "
                  "ipc:///run/events.sock, or empty for off";
         }
         s.events_endpoint = v;
         return {};
       }},
      {"--dump-dir", "DUMP_DIR",
       "directory SIGUSR1 writes the hot-set dump to (default /tmp)",
       [](const std::string& t, Settings& s) -> std::string {
         if (t.empty() || t[0] != '/') {
           return "an absolute path";
         }
         s.dump_dir = t;
         return {};
       }},
  };
}

// Settings of the reference evictor that this design does not need. They
// are accepted, checked for sense, and otherwise ignored.
struct Ignored {
  std::string env;
  std::string why;
  bool numeric;
};

const std::vector<Ignored>& ignored_settings() {
  static const std::vector<Ignored> kIgnored = {
      {"FILE_QUEUE_MAXSIZE",
       "pvc-evictor keeps an index instead of a file queue", true},
      {"FILE_QUEUE_MIN_SIZE",
       "pvc-evictor keeps an index instead of a file queue", true},
      {"TIMING_FILE_PATH", "timing figures are reported as metrics", false},
  };
  return kIgnored;
}

std::string invalid(const Option& o, const std::string& value,
                    const std::string& allowed) {
  return fmt::format("invalid setting {} ({}) = \"{}\": expected {}", o.flag,
                     o.env, value, allowed);
}

std::string cross_check(const Settings& s) {
  if (s.target_threshold >= s.cleanup_threshold) {
    return fmt::format(
        "invalid setting --target-threshold (TARGET_THRESHOLD) = {}: "
        "expected a value below --cleanup-threshold (CLEANUP_THRESHOLD) = {}",
        s.target_threshold, s.cleanup_threshold);
  }
  if (s.inode_cleanup_threshold > 0 &&
      s.inode_target_threshold >= s.inode_cleanup_threshold) {
    return fmt::format(
        "invalid setting --inode-target-threshold (INODE_TARGET_THRESHOLD) "
        "= {}: expected a value below --inode-cleanup-threshold "
        "(INODE_CLEANUP_THRESHOLD) = {}",
        s.inode_target_threshold, s.inode_cleanup_threshold);
  }
  if (s.emergency_threshold < s.cleanup_threshold) {
    return fmt::format(
        "invalid setting --emergency-threshold (EMERGENCY_THRESHOLD) = {}: "
        "expected a value from --cleanup-threshold (CLEANUP_THRESHOLD) = {} "
        "to 100",
        s.emergency_threshold, s.cleanup_threshold);
  }
  return {};
}

}  // namespace

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kAuto:
      return "auto";
    case Mode::kWatch:
      return "watch";
    case Mode::kCrawl:
      return "crawl";
  }
  return "?";
}

std::string Settings::cache_root() const {
  return join_path(mount_path, cache_dir);
}

Environment process_environment() {
  Environment env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos) {
      env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
    }
  }
  return env;
}

ParseResult parse_settings(const std::vector<std::string>& args,
                           const Environment& env) {
  ParseResult result;
  const std::vector<Option> opts = options();

  CLI::App app{
      "pvc-evictor keeps a KV-cache volume between its cleanup and target "
      "thresholds by deleting the coldest cache files first.\n"
      "Every flag can also be set by the environment variable named in "
      "brackets; a flag wins over its variable.",
      "pvc-evictor"};
  app.footer(
      "Subcommands (each has its own --help):\n"
      "  pvc-evictor probe   report the volume, fanotify and atime "
      "behaviour (the init container)\n"
      "  pvc-evictor dump    print a running daemon's hot set or coldest "
      "files");
  app.set_version_flag("--version", PVC_EVICTOR_VERSION);
  std::vector<std::optional<std::string>> given(opts.size());
  for (std::size_t i = 0; i < opts.size(); ++i) {
    const std::string help = opts[i].help + " [" + opts[i].env + "]";
    if (opts[i].is_flag) {
      app.add_option_function<std::string>(
             opts[i].flag, [&given, i](const std::string& v) { given[i] = v; },
             help)
          ->expected(0, 1)
          ->default_str("true")
          ->option_text("[BOOL]");
    } else {
      app.add_option_function<std::string>(
             opts[i].flag, [&given, i](const std::string& v) { given[i] = v; },
             help)
          ->type_name("VALUE");
    }
  }

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.status = ParseStatus::kExit;
    result.message = app.help();
    return result;
  } catch (const CLI::CallForVersion&) {
    result.status = ParseStatus::kExit;
    result.message = std::string("pvc-evictor ") + PVC_EVICTOR_VERSION;
    return result;
  } catch (const CLI::ParseError& e) {
    result.status = ParseStatus::kExit;
    result.exit_code = 2;
    result.message = std::string(e.what()) + "\nRun with --help for usage.";
    return result;
  }

  for (std::size_t i = 0; i < opts.size(); ++i) {
    const Option& o = opts[i];
    std::optional<std::string> value = given[i];
    if (!value) {
      if (auto it = env.find(o.env); it != env.end()) {
        value = it->second;
      }
    }
    if (!value) {
      continue;
    }
    if (o.is_flag && value->empty() && given[i]) {
      *value = "true";
    }
    if (const std::string allowed = o.apply(*value, result.settings);
        !allowed.empty()) {
      result.status = ParseStatus::kExit;
      result.exit_code = 2;
      result.message = invalid(o, *value, allowed);
      return result;
    }
  }
  for (const Ignored& ig : ignored_settings()) {
    if (auto it = env.find(ig.env); it != env.end()) {
      if (ig.numeric) {
        const auto v = to_number(it->second);
        if (!v || *v < 0 || *v != std::floor(*v)) {
          result.status = ParseStatus::kExit;
          result.exit_code = 2;
          result.message = fmt::format(
              "invalid setting {} = \"{}\": expected a whole number "
              "(accepted for compatibility and otherwise unused)",
              ig.env, it->second);
          return result;
        }
      }
      result.notes.push_back(
          fmt::format("{} is accepted and ignored: {}", ig.env, ig.why));
    }
  }
  if (std::string err = cross_check(result.settings); !err.empty()) {
    result.status = ParseStatus::kExit;
    result.exit_code = 2;
    result.message = std::move(err);
  }
  return result;
}

std::string describe(const Settings& s) {
  return fmt::format(
      "mode={} cache_root={} cleanup={}% target={}% inode_cleanup={}% "
      "inode_target={}% emergency={}% hot_minutes={} crawlers={} "
      "interval={}s batch_size={} hex_bucket_len={} dir_cleanup={} "
      "dir_cleanup_ttl={}s temp_max_age={}min rescan_interval={}s "
      "max_cache_bytes={} dry_run={} events_endpoint={}",
      mode_name(s.mode), s.cache_root(), s.cleanup_threshold,
      s.target_threshold, s.inode_cleanup_threshold, s.inode_target_threshold,
      s.emergency_threshold, s.hot_minutes, s.crawlers, s.interval_seconds,
      s.batch_size, s.hex_bucket_len, s.dir_cleanup, s.dir_cleanup_ttl_seconds,
      s.temp_max_age_minutes, s.rescan_interval_seconds, s.max_cache_bytes,
      s.dry_run, s.events_endpoint.empty() ? "off" : s.events_endpoint);
}

}  // namespace pvc
