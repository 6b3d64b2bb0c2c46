// Every setting of the daemon, with its default. Names follow the
// reference evictor's environment variables where one exists, so that an
// existing deployment's ConfigMap carries over unchanged.
#pragma once

#include <cstdint>
#include <string>

namespace pvc {

enum class Mode { kAuto, kWatch, kCrawl };

const char* mode_name(Mode mode);

struct Settings {
  std::string mount_path = "/kv-cache";             // PVC_MOUNT_PATH
  std::string cache_dir = "kv/model-cache/models";  // CACHE_DIRECTORY
  double cleanup_threshold = 85.0;                  // percent
  double target_threshold = 70.0;                   // percent
  double inode_cleanup_threshold = 85.0;            // percent, 0 = off
  double inode_target_threshold = 70.0;             // percent
  double emergency_threshold = 95.0;                // percent
  double hot_minutes = 60.0;                        // hot window
  unsigned crawlers = 8;                            // 1, 2, 4, 8 or 16
  double interval_seconds = 0.5;                    // usage poll
  unsigned batch_size = 100;                        // files per batch
  unsigned hex_bucket_len = 0;                      // 0 = 2 to 4
  bool dir_cleanup = true;
  double dir_cleanup_ttl_seconds = 120.0;
  double temp_max_age_minutes = 60.0;  // 0 = never reclaim
  double rescan_interval_seconds = 300.0;
  std::uint64_t max_cache_bytes = 0;  // 0 = whole volume
  double mount_wait_seconds = 60.0;
  double usage_log_interval_seconds = 60.0;
  bool dry_run = false;
  std::string log_level = "info";
  std::string log_file;
  Mode mode = Mode::kAuto;
  std::string metrics_address;    // host:port for HTTP, empty = off
  std::string dump_dir = "/tmp";  // where SIGUSR1 writes diagnostics
  std::string probe_report;       // the init container's report, if any
  std::string events_endpoint;    // ZeroMQ PUB endpoint, empty = off

  // The directory the evictor manages: mount_path / cache_dir.
  std::string cache_root() const;
};

}  // namespace pvc
