#include "metrics/dump_client.hpp"

#include <fmt/format.h>
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/format.hpp"
#include "metrics/http_server.hpp"

namespace pvc {
namespace {

std::string age(double seconds) {
  if (seconds < 120) {
    return fmt::format("{:.0f}s", seconds);
  }
  if (seconds < 7200) {
    return fmt::format("{:.0f}m", seconds / 60);
  }
  return fmt::format("{:.1f}h", seconds / 3600);
}

// The library names its errors by their enum ("Connection"); say what
// happened instead.
const char* describe(httplib::Error error) {
  switch (error) {
    case httplib::Error::Connection:
      return "could not connect (is it running with --metrics-address set "
             "to this address?)";
    case httplib::Error::ConnectionTimeout:
      return "the connection timed out";
    case httplib::Error::Read:
      return "the connection closed before an answer came";
    case httplib::Error::Write:
      return "could not send the request";
    default:
      return "the request failed";
  }
}

}  // namespace

int run_dump(const std::vector<std::string>& args) {
  CLI::App app{
      "Prints what a running pvc-evictor believes is hot, or its coldest "
      "files, fetched from its HTTP endpoint.",
      "pvc-evictor dump"};
  std::string address = "127.0.0.1:9100";
  std::string kind = "hotset";
  std::size_t limit = kDefaultDumpPage;
  std::size_t offset = 0;
  bool json = false;
  app.add_option("--address", address,
                 "the daemon's METRICS_ADDRESS (default 127.0.0.1:9100)");
  app.add_option("kind", kind, "hotset (default) or coldest")
      ->check(CLI::IsMember({"hotset", "coldest"}));
  app.add_option("--limit", limit, "files per page (at most 10000)");
  app.add_option("--offset", offset, "files to skip");
  app.add_flag("--json", json, "print the raw JSON");
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    // Help is a success; every argument error exits 2, as the daemon's do.
    return app.exit(e) == 0 ? 0 : 2;
  }

  std::string host;
  int port = 0;
  if (!parse_address(address, host, port)) {
    std::fprintf(stderr, "pvc-evictor dump: --address: expected host:port\n");
    return 2;
  }
  if (host == "0.0.0.0") {
    host = "127.0.0.1";
  }
  httplib::Client client(host, port);
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  const auto res = client.Get(
      fmt::format("/debug/{}?limit={}&offset={}", kind, limit, offset));
  if (!res) {
    std::fprintf(stderr,
                 "pvc-evictor dump: cannot reach the daemon at %s: %s\n",
                 address.c_str(), describe(res.error()));
    return 1;
  }
  if (res->status != 200) {
    std::fprintf(stderr, "pvc-evictor dump: the daemon answered %d\n",
                 res->status);
    return 1;
  }
  if (json) {
    std::printf("%s\n", res->body.c_str());
    return 0;
  }
  const auto body = nlohmann::json::parse(res->body, nullptr, false);
  if (body.is_discarded() || !body.contains("files")) {
    std::fprintf(stderr, "pvc-evictor dump: unexpected answer\n");
    return 1;
  }
  std::printf(
      "%s: %zu shown from offset %zu; mode %s; %zu hot of %zu "
      "indexed files; hot window %s\n",
      kind.c_str(), body["files"].size(), offset,
      body.value("mode", "?").c_str(), body.value("hot_files", std::size_t{0}),
      body.value("index_files", std::size_t{0}),
      age(body.value("hot_window_seconds", 0.0)).c_str());
  std::printf("%8s  %10s  %-6s  %4s  %s\n", "AGE", "SIZE", "SOURCE", "OPEN",
              "PATH");
  for (const auto& f : body["files"]) {
    std::printf("%8s  %10s  %-6s  %4d  %s\n",
                age(f.value("age_seconds", 0.0)).c_str(),
                format_bytes(f.value("size", std::uint64_t{0})).c_str(),
                f.value("source", "?").c_str(), f.value("open", 0),
                f.value("path", "?").c_str());
  }
  return 0;
}

}  // namespace pvc
