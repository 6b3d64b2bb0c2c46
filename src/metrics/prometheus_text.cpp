#include "metrics/prometheus_text.hpp"

#include <fmt/format.h>

#include <cmath>

namespace pvc {
namespace {

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  return fmt::format("{}", v);
}

}  // namespace

void PrometheusText::family(std::string_view name, std::string_view help,
                            std::string_view type) {
  if (seen_.find(name) != seen_.end()) {
    return;
  }
  seen_.emplace(name);
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void PrometheusText::sample(std::string_view name, const Labels& labels,
                            double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (std::size_t i = 0; i < labels.size(); ++i) {
      out_ += fmt::format("{}{}=\"{}\"", i == 0 ? "" : ",", labels[i].first,
                          escape_label(labels[i].second));
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += number(value);
  out_ += '\n';
}

void PrometheusText::gauge(std::string_view name, std::string_view help,
                           double value, const Labels& labels) {
  family(name, help, "gauge");
  sample(name, labels, value);
}

void PrometheusText::counter(std::string_view name, std::string_view help,
                             double value, const Labels& labels) {
  family(name, help, "counter");
  sample(name, labels, value);
}

void PrometheusText::histogram(std::string_view name, std::string_view help,
                               const std::vector<double>& bounds,
                               const std::vector<std::uint64_t>& cumulative,
                               double sum, std::uint64_t count) {
  family(name, help, "histogram");
  const std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i < bounds.size() && i < cumulative.size(); ++i) {
    sample(bucket, {{"le", number(bounds[i])}},
           static_cast<double>(cumulative[i]));
  }
  sample(bucket, {{"le", "+Inf"}}, static_cast<double>(count));
  sample(std::string(name) + "_sum", {}, sum);
  sample(std::string(name) + "_count", {}, static_cast<double>(count));
}

}  // namespace pvc
