// Least privilege after start-up.
//
// Watch mode needs CAP_SYS_ADMIN only to place the fanotify mark; once it
// is placed, the daemon keeps just what deleting another user's files
// requires and drops everything else, including from the bounding set, so
// a compromise of the daemon cannot use what it no longer needs.
#pragma once

#include <string>

namespace pvc {

// Keeps CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (reach and delete files of
// vLLM's user), CAP_FOWNER (O_NOATIME on their directories) and CAP_LEASE
// (the open-file check on their files), where the process has them, and
// drops every other capability. Returns a description of what is kept for
// the log, or of why nothing could be changed. Call before any thread is
// started: capabilities are per thread.
std::string drop_capabilities();

}  // namespace pvc
