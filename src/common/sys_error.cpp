#include "common/sys_error.hpp"

#include <fmt/format.h>

#include <cstring>

#include "common/escape.hpp"

namespace pvc {

std::string describe_errno(int err) {
  const char* name = strerrorname_np(err);
  return fmt::format(
      "{} ({})", name != nullptr ? name : "E?",
      strerrordesc_np(err) != nullptr ? strerrordesc_np(err) : "unknown error");
}

std::string sys_message(std::string_view verb, std::string_view path, int err) {
  return fmt::format("{} {}: {}", verb, escape_bytes(path),
                     describe_errno(err));
}

}  // namespace pvc
