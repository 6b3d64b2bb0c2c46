// Small helpers shared by the benchmark programs: CPU time of this process
// (all threads) from getrusage, resident memory from /proc/self/statm, a
// monotonic clock, a strict command-line reader and a one-line JSON writer.
//
// The programs print exactly one JSON object on stdout; scripts/bench.sh
// collects them. Diagnostics go to stderr.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace pvc::bench {

// User and system CPU seconds of this process, every thread included.
struct CpuTimes {
  double user = 0;
  double sys = 0;
  double total() const { return user + sys; }
};

inline CpuTimes cpu_now() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  const auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec) +
           static_cast<double>(tv.tv_usec) / 1e6;
  };
  return {secs(ru.ru_utime), secs(ru.ru_stime)};
}

inline double wall_now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Resident set size in bytes (second field of /proc/self/statm).
inline std::uint64_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0;
  std::uint64_t resident = 0;
  in >> size >> resident;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// "--name value" and "--flag" arguments. Unknown names are an error, so a
// typo in scripts/bench.sh fails loudly instead of measuring the default.
class Args {
 public:
  Args(int argc, char** argv, std::vector<std::string> valued,
       std::vector<std::string> flags) {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (contains(flags, a)) {
        values_[a].assign(1, '1');
      } else if (contains(valued, a) && i + 1 < argc) {
        values_[a] = argv[++i];
      } else {
        std::fprintf(stderr, "%s: unknown or incomplete argument %s\n", argv[0],
                     a.c_str());
        std::exit(2);
      }
    }
  }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string str(const std::string& name, std::string fallback = "") const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  std::uint64_t num(const std::string& name, std::uint64_t fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : std::stoull(it->second);
  }
  double real(const std::string& name, double fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : std::stod(it->second);
  }

 private:
  static bool contains(const std::vector<std::string>& v,
                       const std::string& s) {
    for (const auto& x : v) {
      if (x == s) {
        return true;
      }
    }
    return false;
  }
  std::map<std::string, std::string> values_;
};

// Builds {"k": v, ...} in insertion order.
class Json {
 public:
  Json& num(std::string_view key, double value) {
    sep(key);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", value);
    out_ << buf;
    return *this;
  }
  Json& integer(std::string_view key, std::uint64_t value) {
    sep(key);
    out_ << value;
    return *this;
  }
  Json& str(std::string_view key, std::string_view value) {
    sep(key);
    out_ << '"';
    for (const char c : value) {
      if (c == '"' || c == '\\') {
        out_ << '\\';
      }
      out_ << c;
    }
    out_ << '"';
    return *this;
  }
  Json& boolean(std::string_view key, bool value) {
    sep(key);
    out_ << (value ? "true" : "false");
    return *this;
  }
  std::string done() const {
    std::string s(1, '{');
    s.append(out_.str());
    s.push_back('}');
    return s;
  }

 private:
  void sep(std::string_view key) {
    if (!first_) {
      out_ << ", ";
    }
    first_ = false;
    out_ << '"' << key << "\": ";
  }
  std::ostringstream out_;
  bool first_ = true;
};

}  // namespace pvc::bench
