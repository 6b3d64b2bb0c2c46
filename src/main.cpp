// pvc-evictor: keeps a vLLM KV-cache volume between its cleanup and target
// thresholds by deleting the coldest cache files first. The work lives in
// the library under src/; this file only parses the command line.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/sys_error.hpp"
#include "config/parse.hpp"
#include "daemon/daemon.hpp"
#include "daemon/logging.hpp"
#include "metrics/dump_client.hpp"
#include "probe/probe.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args.front() == "dump") {
    return pvc::run_dump({args.begin() + 1, args.end()});
  }
  if (!args.empty() && args.front() == "probe") {
    return pvc::run_probe({args.begin() + 1, args.end()});
  }
  const pvc::ParseResult parsed =
      pvc::parse_settings(args, pvc::process_environment());
  if (parsed.status == pvc::ParseStatus::kExit) {
    std::FILE* out = parsed.exit_code == 0 ? stdout : stderr;
    std::fprintf(out, "%s%s\n", parsed.exit_code == 0 ? "" : "pvc-evictor: ",
                 parsed.message.c_str());
    return parsed.exit_code;
  }
  try {
    pvc::setup_logging(parsed.settings.log_level, parsed.settings.log_file);
    for (const std::string& note : parsed.notes) {
      spdlog::info("{}", note);
    }
    return pvc::run_daemon(parsed.settings);
  } catch (const pvc::FatalError& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}
