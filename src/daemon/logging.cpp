#include "daemon/logging.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <vector>

namespace pvc {

void setup_logging(const std::string& level, const std::string& file) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stdout_sink_mt>());
  std::string file_error;
  if (!file.empty()) {
    try {
      sinks.push_back(
          std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, false));
    } catch (const spdlog::spdlog_ex& e) {
      file_error = e.what();
    }
  }
  auto logger = std::make_shared<spdlog::logger>("pvc-evictor", sinks.begin(),
                                                 sinks.end());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %l %v");
  logger->set_level(
      spdlog::level::from_str(level == "warning" ? "warn" : level));
  // Lines reach stdout at once: log scrapers and tests read them live.
  logger->flush_on(spdlog::level::trace);
  // A log file on a full volume must not stop eviction, which is what
  // frees the space; report the first failure on stderr and go on.
  logger->set_error_handler([](const std::string& msg) {
    static std::atomic<bool> reported{false};
    if (!reported.exchange(true)) {
      std::fprintf(stderr, "pvc-evictor: log write failed: %s\n", msg.c_str());
    }
  });
  spdlog::set_default_logger(logger);
  if (!file_error.empty()) {
    spdlog::warn("log file {} unusable ({}); logging to stdout only", file,
                 file_error);
  }
}

}  // namespace pvc
