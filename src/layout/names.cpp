#include "layout/names.hpp"

#include <algorithm>

namespace pvc {
namespace {

constexpr std::string_view kBlockSuffix = ".bin";
constexpr std::string_view kTempSuffix = ".tmp";
constexpr std::size_t kHashDigits = 16;
constexpr std::size_t kConfigHashDigits = 12;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool all_of(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}

bool is_hex(char c) {
  return hex_digit(c) >= 0;
}

bool is_lower_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f');
}

}  // namespace

FileKind classify_file(std::string_view name) {
  if (name.size() > kBlockSuffix.size() && name.ends_with(kBlockSuffix)) {
    return FileKind::kBlock;
  }
  // "<x>.bin_<digits>.tmp"
  if (!name.ends_with(kTempSuffix)) {
    return FileKind::kOther;
  }
  std::string_view stem = name.substr(0, name.size() - kTempSuffix.size());
  const auto underscore = stem.rfind('_');
  if (underscore == std::string_view::npos) {
    return FileKind::kOther;
  }
  const std::string_view digits = stem.substr(underscore + 1);
  const std::string_view block = stem.substr(0, underscore);
  if (all_of(digits, is_digit) && block.size() > kBlockSuffix.size() &&
      block.ends_with(kBlockSuffix)) {
    return FileKind::kTemp;
  }
  return FileKind::kOther;
}

std::optional<std::uint64_t> block_hash(std::string_view name) {
  if (name.size() != kHashDigits + kBlockSuffix.size() ||
      !name.ends_with(kBlockSuffix)) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < kHashDigits; ++i) {
    if (!is_lower_hex(name[i])) {
      return std::nullopt;
    }
    value = (value << 4) | static_cast<std::uint64_t>(hex_digit(name[i]));
  }
  return value;
}

std::string block_name(std::uint64_t hash) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name(kHashDigits, '0');
  for (std::size_t i = kHashDigits; i-- > 0; hash >>= 4U) {
    name[i] = kHex[hash & 0xfU];
  }
  name += kBlockSuffix;
  return name;
}

std::optional<unsigned> bucket_value(std::string_view name, unsigned width) {
  const bool width_ok = width == 0 ? (name.size() >= 2 && name.size() <= 4)
                                   : name.size() == width;
  if (!width_ok || !all_of(name, is_hex)) {
    return std::nullopt;
  }
  unsigned value = 0;
  for (const char c : name) {
    value = (value << 4) | static_cast<unsigned>(hex_digit(c));
  }
  return value;
}

bool is_bucket_dir_name(std::string_view name) {
  constexpr std::size_t kMaxBucketDigits = 4;
  std::string_view hex = name;
  const auto group = name.find("_g");
  if (group != std::string_view::npos) {
    if (!all_of(name.substr(group + 2), is_digit)) {
      return false;
    }
    hex = name.substr(0, group);
  }
  return hex.size() <= kMaxBucketDigits && all_of(hex, is_hex);
}

std::optional<std::string_view> config_dir_of_rank_dir(std::string_view name) {
  const auto rank = name.rfind("_r");
  if (rank == std::string_view::npos ||
      !all_of(name.substr(rank + 2), is_digit)) {
    return std::nullopt;
  }
  const std::string_view config = name.substr(0, rank);
  const auto underscore = config.rfind('_');
  if (underscore == std::string_view::npos || underscore == 0) {
    return std::nullopt;
  }
  const std::string_view digest = config.substr(underscore + 1);
  if (digest.size() != kConfigHashDigits || !all_of(digest, is_lower_hex)) {
    return std::nullopt;
  }
  return config;
}

}  // namespace pvc
