// Proves the event pipeline end to end before the daemon relies on it.
//
// A mark the kernel accepted can still deliver nothing: a seccomp or
// SELinux policy, a filesystem whose events never fire, a bug in a
// backport. So the daemon opens a directory on the volume itself (a path
// its crawl never uses for this) and waits up to a second for the kernel
// to report that open. No event, no watch mode.
#pragma once

#include <string>

#include "watch/fanotify_group.hpp"

namespace pvc {

// Opens and closes `dir` and waits for the event. Returns true when it
// arrived; otherwise `why` says what was seen instead. Consumes whatever
// the group had queued.
bool watch_self_check(const FanotifyGroup& group, const std::string& dir,
                      std::string& why);

}  // namespace pvc
