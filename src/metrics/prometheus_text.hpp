// Writes the Prometheus text exposition format (version 0.0.4). Debian
// packages no C++ Prometheus client, and the format is small: HELP and
// TYPE lines once per family, then one sample per line with escaped label
// values.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pvc {

using Labels = std::vector<std::pair<std::string, std::string>>;

class PrometheusText {
 public:
  void gauge(std::string_view name, std::string_view help, double value,
             const Labels& labels = {});
  void counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  // A histogram from cumulative bucket counts (upper bounds ascending).
  void histogram(std::string_view name, std::string_view help,
                 const std::vector<double>& bounds,
                 const std::vector<std::uint64_t>& cumulative, double sum,
                 std::uint64_t count);

  const std::string& text() const { return out_; }

 private:
  void family(std::string_view name, std::string_view help,
              std::string_view type);
  void sample(std::string_view name, const Labels& labels, double value);

  std::string out_;
  std::set<std::string, std::less<>> seen_;
};

}  // namespace pvc
