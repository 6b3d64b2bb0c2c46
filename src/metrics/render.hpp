// Status snapshots as Prometheus text, health JSON and diagnostics JSON.
// Paths in JSON are escaped byte strings (see common/escape.hpp): file
// names are bytes, JSON strings must be UTF-8, and nothing in a response
// may forge structure.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "metrics/status.hpp"

namespace pvc {

std::string render_metrics(const StatusSnapshot& s);

// {"status": "ok"|"stalled", "stalled": [...], "loops": {...}}
nlohmann::json health_json(const StatusSnapshot& s);
bool healthy(const StatusSnapshot& s);

nlohmann::json files_json(const std::vector<FileSnapshot>& files,
                          double now_unix, std::size_t offset,
                          std::size_t limit);

}  // namespace pvc
