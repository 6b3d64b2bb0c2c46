// Command line and environment -> Settings.
//
// Each setting is a flag and an environment variable; the flag wins over
// the variable, which wins over the default. Values are read as text and
// converted here rather than by the argument library, so that every
// invalid value stops start-up with one message that names the setting
// (flag and variable), the value, and what is allowed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/settings.hpp"

namespace pvc {

// What to do after parsing.
enum class ParseStatus { kRun, kExit };

struct ParseResult {
  ParseStatus status = ParseStatus::kRun;
  int exit_code = 0;    // when kExit (0 for --help and --version)
  std::string message;  // help text, version, or the error
  Settings settings;
  std::vector<std::string> notes;  // accepted-but-unused settings, etc.
};

using Environment = std::map<std::string, std::string>;

// The process environment, for parse_settings.
Environment process_environment();

ParseResult parse_settings(const std::vector<std::string>& args,
                           const Environment& env);

// A human-readable list of the effective settings, for the start-up log.
std::string describe(const Settings& s);

}  // namespace pvc
