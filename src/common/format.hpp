// Numbers for people: byte counts in binary units.
#pragma once

#include <cstdint>
#include <string>

namespace pvc {

// "1.50 GiB", "312 B".
std::string format_bytes(std::uint64_t bytes);

}  // namespace pvc
