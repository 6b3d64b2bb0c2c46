#include "metrics/http_server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>

#include "common/sys_error.hpp"
#include "metrics/render.hpp"

namespace pvc {
namespace {

// A whole-number query parameter, capped at `max`; nothing when it is
// present but not a whole number.
std::optional<std::size_t> param(const httplib::Request& req, const char* name,
                                 std::size_t fallback, std::size_t max) {
  if (!req.has_param(name)) {
    return fallback;
  }
  const std::string v = req.get_param_value(name);
  std::size_t n = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || ptr != v.data() + v.size()) {
    return std::nullopt;
  }
  return std::min(n, max);
}

constexpr const char* kJson = "application/json";
constexpr time_t kReadTimeoutMicros = 500'000;
constexpr time_t kKeepAliveSeconds = 1;
constexpr std::size_t kWorkers = 16;
constexpr int kFirstUnprivilegedPort = 1024;

}  // namespace

bool parse_address(const std::string& address, std::string& host, int& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return false;
  }
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    host = "0.0.0.0";
  }
  const std::string p = address.substr(colon + 1);
  const auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
  return ec == std::errc() && ptr == p.data() + p.size() && port >= 0 &&
         port <= 65535;
}

HttpServer::HttpServer(StatusSource& source) : source_(source) {
  // Each connection holds one of a few worker threads until it closes.
  // With the library's defaults (5 s to wait for a request, 5 s between
  // kept-alive requests) a handful of idle clients starved the health
  // probes, and a scraper's kept-alive connection delayed exit by 4 s.
  // Requests here are small and sent at once, so half a second to send
  // one and a second between kept-alive ones are plenty, and twice the
  // library's 8 workers let a probe through a burst of idle connections.
  server_.set_read_timeout(0, kReadTimeoutMicros);
  server_.set_write_timeout(kKeepAliveSeconds, 0);
  server_.set_keep_alive_timeout(kKeepAliveSeconds);
  server_.new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server_.Get("/metrics",
              [this](const httplib::Request&, httplib::Response& res) {
                res.set_content(render_metrics(source_.status()),
                                "text/plain; version=0.0.4; charset=utf-8");
              });
  server_.Get("/healthz",
              [this](const httplib::Request&, httplib::Response& res) {
                const StatusSnapshot s = source_.status();
                res.status = healthy(s) ? 200 : 503;
                res.set_content(health_json(s).dump(), kJson);
              });
  server_.Get(
      "/readyz", [this](const httplib::Request&, httplib::Response& res) {
        const StatusSnapshot s = source_.status();
        res.status = s.ready ? 200 : 503;
        res.set_content(nlohmann::json{{"ready", s.ready}}.dump(), kJson);
      });
  const auto dump = [this](bool hot) {
    return [this, hot](const httplib::Request& req, httplib::Response& res) {
      const auto offset = param(req, "offset", 0, SIZE_MAX);
      const auto limit = param(req, "limit", kDefaultDumpPage, kMaxDumpPage);
      if (!offset || !limit) {
        res.status = 400;
        res.set_content(
            nlohmann::json{{"error", fmt::format("limit and offset must be "
                                                 "whole numbers; limit is "
                                                 "capped at {}",
                                                 kMaxDumpPage)}}
                .dump(),
            kJson);
        return;
      }
      const auto files = hot ? source_.hot_files(*offset, *limit)
                             : source_.coldest_files(*offset, *limit);
      const StatusSnapshot s = source_.status();
      nlohmann::json body = files_json(files, s.now_unix, *offset, *limit);
      body["kind"] = hot ? "hotset" : "coldest";
      body["mode"] = s.mode;
      body["hot_window_seconds"] = s.hot_window_seconds;
      body["hot_files"] = s.hot_files;
      body["index_files"] = s.index.files;
      res.set_content(body.dump(2), kJson);
    };
  };
  server_.Get("/debug/hotset", dump(true));
  server_.Get("/debug/coldest", dump(false));
}

HttpServer::~HttpServer() {
  stop();
}

bool HttpServer::start(const std::string& address, std::string& error) {
  std::string host;
  int port = 0;
  if (!parse_address(address, host, port)) {
    error = "expected host:port, e.g. 0.0.0.0:9100";
    return false;
  }
  errno = 0;
  if (port == 0) {
    port_ = server_.bind_to_any_port(host.c_str());
  } else {
    port_ = server_.bind_to_port(host.c_str(), port) ? port : -1;
  }
  const int err = errno;  // what bind() or listen() said, if they failed
  if (port_ < 0) {
    error = "cannot listen on " + address;
    if (err != 0) {
      error += ": " + describe_errno(err);
    }
    if (err == EACCES && port > 0 && port < kFirstUnprivilegedPort) {
      error +=
          "; ports below 1024 need CAP_NET_BIND_SERVICE, which the daemon "
          "does not keep: use a port from 1024 up, such as 9100";
    }
    return false;
  }
  thread_ = std::jthread([this] { server_.listen_after_bind(); });
  return true;
}

void HttpServer::stop() {
  if (thread_.joinable()) {
    server_.stop();
    thread_.join();
  }
}

}  // namespace pvc
