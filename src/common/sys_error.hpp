// Failures of system calls, reported as "<verb> <path>: <reason>" with the
// errno saved right after the call. Start-up code throws these; run-time
// code returns error codes and formats them with describe_errno().
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pvc {

// A condition that stops start-up: bad configuration, an unusable volume.
// main() prints the message and exits non-zero.
class FatalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "ENOENT (No such file or directory)"
std::string describe_errno(int err);

// "<verb> <escaped path>: ENOENT (No such file or directory)"
std::string sys_message(std::string_view verb, std::string_view path, int err);

}  // namespace pvc
