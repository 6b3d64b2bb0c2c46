// The one way a base directory and a relative path below it are joined
// into a path for messages and for stat(): the configured cache root and
// the root CacheRoot opens must always name the same place.
#pragma once

#include <string>
#include <string_view>

namespace pvc {

// "base/rel", or base itself when rel is empty; no doubled '/'.
inline std::string join_path(std::string_view base, std::string_view rel) {
  std::string out(base);
  if (!rel.empty()) {
    if (!out.ends_with('/')) {
      out += '/';
    }
    out += rel;
  }
  return out;
}

}  // namespace pvc
