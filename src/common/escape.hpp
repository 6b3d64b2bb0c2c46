// File names are bytes, not text: any byte but '/' and NUL may appear. Before
// a name reaches a log line or a JSON document it is escaped so that a
// newline, a terminal control sequence or invalid UTF-8 cannot forge or
// corrupt output.
#pragma once

#include <string>
#include <string_view>

namespace pvc {

// Printable ASCII passes through; backslash, quotes and every other byte
// become C-style escapes (\n, \t, \\, \", \xNN).
std::string escape_bytes(std::string_view raw);

}  // namespace pvc
