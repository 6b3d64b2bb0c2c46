// Log set-up. Levels have fixed meanings throughout the daemon:
//   debug    one line per file, per event, per skipped entry
//   info     start-up, the mode, thresholds crossed, one summary per
//            deletion episode and per crawl
//   warning  a fallback taken or a fault handled
//   error    something an operator must act on
// Counts belong in metrics, not in log lines.
#pragma once

#include <string>

namespace pvc {

// Logs to stdout and, when `file` is not empty, also to that file. A file
// that cannot be opened or written (a full volume) costs a warning, never
// the daemon.
void setup_logging(const std::string& level, const std::string& file);

}  // namespace pvc
