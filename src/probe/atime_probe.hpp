// How atime really behaves on a volume, measured rather than read from the
// mount options: the options can lie (a bind mount copies its source's
// flags when it is made, a remount inside a pod changes only that pod's
// view), and what matters to crawl mode is whether a read moves atime.
//
// The measurement writes one small probe file, then reads it twice with
// timestamps arranged so the three behaviours part ways:
//   1. atime newer than mtime and ctime (so, ahead of the clock): only
//      strictatime updates it on a read;
//   2. atime older than mtime: relatime updates it too, noatime does not.
#pragma once

#include <string>

namespace pvc {

enum class AtimeBehaviour { kStrict, kRelative, kNone, kUnknown };

const char* atime_behaviour_name(AtimeBehaviour b);

struct AtimeProbe {
  AtimeBehaviour behaviour = AtimeBehaviour::kUnknown;
  std::string detail;  // what was seen, or why it could not be measured
};

// Measures in directory `dir` (which must be writable); removes its probe
// file whatever happens.
AtimeProbe probe_atime(const std::string& dir);

}  // namespace pvc
