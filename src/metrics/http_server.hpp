// The HTTP endpoint: /metrics (Prometheus), /healthz (liveness: every loop
// made progress within its deadline), /readyz (the first crawl is done),
// and /debug/hotset and /debug/coldest (bounded, paged JSON).
//
// cpp-httplib serves on threads of its own; handlers only take snapshots
// from the StatusSource, so a slow scraper never holds up eviction.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

#include "metrics/status.hpp"

namespace pvc {

// Largest page the diagnostics endpoints return; bounds the memory and
// time one request can take on a million-file index.
constexpr std::size_t kMaxDumpPage = 10000;
constexpr std::size_t kDefaultDumpPage = 100;

class HttpServer {
 public:
  explicit HttpServer(StatusSource& source);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds "host:port" (":port" means all addresses) and serves on a
  // thread of its own. Returns false and sets `error` if it cannot bind.
  bool start(const std::string& address, std::string& error);
  void stop();
  int port() const { return port_; }

 private:
  StatusSource& source_;
  httplib::Server server_;
  std::jthread thread_;
  int port_ = 0;
};

// Splits "host:port"; an empty host means every address.
bool parse_address(const std::string& address, std::string& host, int& port);

}  // namespace pvc
