// The daemon: wires the index, crawler, usage monitor and evictor together
// and runs the main loop until SIGTERM or SIGINT.
//
// Threads: the main loop (usage checks and deletion), one crawl thread at a
// time (which starts its crawler threads), and a signal thread. The main
// loop never waits on a crawl: deletion works from whatever the index
// holds, so the daemon is useful before the first crawl ends.
#pragma once

#include "config/settings.hpp"

namespace pvc {

// Runs until a stop signal; returns the process exit code.
int run_daemon(const Settings& settings);

}  // namespace pvc
