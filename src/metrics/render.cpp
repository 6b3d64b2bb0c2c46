#include "metrics/render.hpp"

#include <fmt/format.h>

#include <cstring>

#include "common/escape.hpp"
#include "metrics/prometheus_text.hpp"

namespace pvc {
namespace {

std::string errno_label(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : fmt::format("{}", err);
}

void render_usage(PrometheusText& p, const StatusSnapshot& s) {
  const Usage& u = s.evictor.last_usage;
  p.gauge("pvc_evictor_usage_ratio",
          "Used share of the volume (or of the byte budget), as df reports",
          u.byte_ratio(), {{"resource", "bytes"}});
  p.gauge("pvc_evictor_usage_ratio", "", u.inode_ratio(),
          {{"resource", "inodes"}});
  p.gauge("pvc_evictor_used_bytes", "Bytes in use",
          static_cast<double>(u.used_bytes));
  p.gauge("pvc_evictor_capacity_bytes",
          "Bytes in use plus bytes available to unprivileged writers",
          static_cast<double>(u.capacity_bytes));
  const Thresholds& t = s.thresholds;
  const std::pair<const char*, double> th[] = {
      {"cleanup", t.cleanup}, {"target", t.target}, {"emergency", t.emergency}};
  for (const auto& [kind, value] : th) {
    p.gauge("pvc_evictor_threshold_ratio", "Configured thresholds", value,
            {{"resource", "bytes"}, {"threshold", kind}});
  }
  p.gauge("pvc_evictor_threshold_ratio", "", t.inode_cleanup,
          {{"resource", "inodes"}, {"threshold", "cleanup"}});
  p.gauge("pvc_evictor_threshold_ratio", "", t.inode_target,
          {{"resource", "inodes"}, {"threshold", "target"}});
}

void render_eviction(PrometheusText& p, const StatusSnapshot& s) {
  const EvictorTotals& e = s.evictor;
  p.gauge("pvc_evictor_episode_active", "1 while a deletion episode is running",
          e.episode_active ? 1 : 0);
  p.counter("pvc_evictor_episodes_total", "Deletion episodes started",
            static_cast<double>(e.episodes));
  for (std::size_t r = 0; r < kDeleteReasons; ++r) {
    const Labels reason = {
        {"reason", reason_name(static_cast<DeleteReason>(r))}};
    p.counter("pvc_evictor_deleted_files_total",
              "Files deleted (in a dry run: that would have been)",
              static_cast<double>(e.files_deleted[r]), reason);
  }
  for (std::size_t r = 0; r < kDeleteReasons; ++r) {
    p.counter("pvc_evictor_deleted_bytes_total", "Allocated bytes freed",
              static_cast<double>(e.bytes_deleted[r]),
              {{"reason", reason_name(static_cast<DeleteReason>(r))}});
  }
  std::uint64_t errors = 0;
  for (const auto& [err, n] : e.errors_by_errno) {
    errors += n;
  }
  const std::pair<const char*, std::uint64_t> skipped[] = {
      {"hot", e.skipped_hot},
      {"open", e.skipped_open},
      {"changed", e.skipped_changed},
      {"vanished", e.vanished},
      {"error", errors}};
  for (const auto& [reason, n] : skipped) {
    p.counter("pvc_evictor_skipped_files_total",
              "Victims left alone at the re-check, by reason",
              static_cast<double>(n), {{"reason", reason}});
  }
  for (const auto& [err, n] : e.errors_by_errno) {
    p.counter("pvc_evictor_delete_errors_total", "Failed deletions by errno",
              static_cast<double>(n), {{"errno", errno_label(err)}});
  }
  if (e.errors_by_errno.empty()) {
    p.counter("pvc_evictor_delete_errors_total", "Failed deletions by errno", 0,
              {{"errno", "none"}});
  }
  p.counter("pvc_evictor_dirs_removed_total",
            "Empty bucket directories removed",
            static_cast<double>(e.dirs_removed));
  p.histogram("pvc_evictor_episode_duration_seconds",
              "Duration of finished deletion episodes",
              EvictorTotals::kEpisodeBuckets, e.episode_buckets,
              e.episode_seconds_sum, e.episode_seconds_count);
  p.gauge("pvc_evictor_stuck",
          "1 when usage is above cleanup and nothing can be deleted",
          e.stuck ? 1 : 0);
  p.gauge("pvc_evictor_inode_limits_off_and_high",
          "1 when inode limits are off and inode usage is above 85%",
          e.inodes_unwatched_high ? 1 : 0);
}

void render_index(PrometheusText& p, const StatusSnapshot& s) {
  const IndexStats& i = s.index;
  p.gauge("pvc_evictor_index_files", "Cache files in the index",
          static_cast<double>(i.files));
  p.gauge("pvc_evictor_index_temp_files", "Writer temp files in the index",
          static_cast<double>(i.temp_files));
  p.gauge("pvc_evictor_index_bytes", "Allocated bytes of indexed files",
          static_cast<double>(i.bytes));
  p.gauge("pvc_evictor_index_dirs", "Directories in the index",
          static_cast<double>(i.dirs));
  p.gauge("pvc_evictor_index_memory_bytes",
          "Memory held by the index structures",
          static_cast<double>(i.memory_bytes));
  p.gauge("pvc_evictor_open_files", "Indexed files open now (watch mode)",
          static_cast<double>(i.open_files));
  p.gauge("pvc_evictor_hot_files", "Files used within the hot window",
          static_cast<double>(s.hot_files));
  p.gauge("pvc_evictor_hot_window_seconds", "The hot window",
          s.hot_window_seconds);
  const double coldest =
      i.coldest_use == 0 ? 0 : s.now_unix - ns_to_seconds(i.coldest_use);
  p.gauge("pvc_evictor_coldest_age_seconds",
          "Age of the least recently used indexed file", coldest);
}

void render_crawl(PrometheusText& p, const StatusSnapshot& s) {
  const CrawlStatus& c = s.crawl;
  p.gauge("pvc_evictor_crawl_running", "1 while a crawl runs",
          c.running ? 1 : 0);
  p.counter("pvc_evictor_crawls_total", "Crawls finished",
            static_cast<double>(c.completed), {{"result", "complete"}});
  p.counter("pvc_evictor_crawls_total", "", static_cast<double>(c.stopped),
            {{"result", "stopped"}});
  p.gauge("pvc_evictor_crawl_duration_seconds", "Duration of the last crawl",
          c.have_last ? c.last.seconds : 0);
  p.gauge("pvc_evictor_crawl_files", "Files seen by the last crawl",
          static_cast<double>(c.last.files));
  p.gauge("pvc_evictor_crawl_files_per_second", "Rate of the last crawl",
          c.have_last && c.last.seconds > 0
              ? static_cast<double>(c.last.files) / c.last.seconds
              : 0);
  p.counter("pvc_evictor_crawl_skipped_total",
            "Entries crawls skipped, by reason",
            static_cast<double>(c.skipped_links), {{"reason", "link"}});
  p.counter("pvc_evictor_crawl_skipped_total", "",
            static_cast<double>(c.skipped_foreign),
            {{"reason", "other_mount"}});
  p.counter("pvc_evictor_crawl_skipped_total", "",
            static_cast<double>(c.skipped_errors), {{"reason", "error"}});
}

void render_watch(PrometheusText& p, const StatusSnapshot& s) {
  const WatchStatus& w = s.watch;
  p.counter("pvc_evictor_events_received_total",
            "fanotify events read from the kernel",
            static_cast<double>(w.events));
  p.counter("pvc_evictor_events_applied_total",
            "fanotify events that changed the index",
            static_cast<double>(w.applied));
  p.counter("pvc_evictor_event_overflows_total",
            "Kernel queue overflows (events lost; each forces a rescan)",
            static_cast<double>(w.overflows));
  p.counter("pvc_evictor_events_malformed_total",
            "Event records dropped as malformed",
            static_cast<double>(w.malformed));
}

}  // namespace

std::string render_metrics(const StatusSnapshot& s) {
  PrometheusText p;
  p.gauge("pvc_evictor_build_info", "Version of the running daemon", 1,
          {{"version", PVC_EVICTOR_VERSION}});
  p.gauge("pvc_evictor_mode", "The mode in use (1) and why", 1,
          {{"mode", s.mode}, {"reason", s.mode_reason}});
  p.gauge("pvc_evictor_ready", "1 once the first crawl has completed",
          s.ready ? 1 : 0);
  render_usage(p, s);
  render_eviction(p, s);
  render_index(p, s);
  render_crawl(p, s);
  render_watch(p, s);
  for (const LoopState& l : s.loops) {
    p.gauge("pvc_evictor_loop_last_progress_timestamp_seconds",
            "When each loop last made progress (Unix time)",
            l.last_progress_unix, {{"loop", l.name}});
  }
  for (const LoopState& l : s.loops) {
    p.gauge("pvc_evictor_loop_stalled", "1 when a loop missed its deadline",
            l.stalled ? 1 : 0, {{"loop", l.name}});
  }
  return p.text();
}

bool healthy(const StatusSnapshot& s) {
  for (const LoopState& l : s.loops) {
    if (l.stalled) {
      return false;
    }
  }
  return true;
}

nlohmann::json health_json(const StatusSnapshot& s) {
  nlohmann::json loops = nlohmann::json::object();
  nlohmann::json stalled = nlohmann::json::array();
  for (const LoopState& l : s.loops) {
    loops[l.name] = {{"seconds_since_progress",
                      l.parked ? 0.0 : monotonic_seconds() - l.last_progress},
                     {"deadline_seconds", l.deadline},
                     {"parked", l.parked},
                     {"stalled", l.stalled}};
    if (l.stalled) {
      stalled.push_back(l.name);
    }
  }
  return {{"status", stalled.empty() ? "ok" : "stalled"},
          {"stalled", stalled},
          {"mode", s.mode},
          {"mode_reason", s.mode_reason},
          {"ready", s.ready},
          {"loops", loops}};
}

nlohmann::json files_json(const std::vector<FileSnapshot>& files,
                          double now_unix, std::size_t offset,
                          std::size_t limit) {
  nlohmann::json list = nlohmann::json::array();
  for (const FileSnapshot& f : files) {
    const std::string path =
        f.dir_path.empty() ? f.name : f.dir_path + "/" + f.name;
    const double last_use = ns_to_seconds(f.last_use);
    list.push_back(
        {{"path", escape_bytes(path)},
         {"size", f.bytes},
         {"last_use", last_use},
         {"age_seconds", now_unix - last_use},
         {"source", f.source == UseSource::kEvent ? "event" : "atime"},
         {"open", f.open_count}});
  }
  return {{"offset", offset},
          {"limit", limit},
          {"count", list.size()},
          {"files", list}};
}

}  // namespace pvc
