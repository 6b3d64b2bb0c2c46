// `pvc-evictor probe`: the init container's job.
//
// Before the daemon starts, it reports what this volume and this pod allow:
// the mount and its filesystem, capacity and usage, whether a fanotify
// filesystem mark works (and if not, why), the queue size, and how atime
// actually behaves when a file is read. It can raise the fanotify queue
// limit and try a strictatime remount, and says honestly what that
// changes: a remount inside this pod leaves every other pod's mount, and
// so vLLM's reads, as they were.
//
// The report goes to stdout and to a file on a shared emptyDir; the daemon
// reads it at start (--probe-report) and, in auto mode, decides with it.
// The probe fails (non-zero exit) only when the volume itself is unusable;
// a missing feature is a finding.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace pvc {

int run_probe(const std::vector<std::string>& args);

// What the daemon takes from a report.
struct ProbeFindings {
  bool loaded = false;
  bool fanotify_available = true;
  std::string fanotify_reason;
  std::string atime_behaviour;  // "strictatime", "relatime", ...
  nlohmann::json report;
};

// Reads a report written by `probe`; `error` is set when it cannot.
ProbeFindings read_probe_report(const std::string& path, std::string& error);

}  // namespace pvc
