#include "events/model_names.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "common/unique_fd.hpp"
#include "layout/names.hpp"

namespace pvc {
namespace {

constexpr std::size_t kConfigDigestDigits = 12;
constexpr const char* kConfigFile = "config.json";

bool is_config_digest(std::string_view s) {
  return s.size() == kConfigDigestDigits &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_plain_component(std::string_view s) {
  return !s.empty() && s != "." && s != "..";
}

ModelNameRead failure(ConfigStatus status, int err = 0) {
  ModelNameRead r;
  r.status = status;
  r.err = err;
  return r;
}

ModelNameRead from_errno(int err) {
  switch (err) {
    case ENOENT:
      return failure(ConfigStatus::kMissing, err);
    case ELOOP:    // a symbolic link (O_NOFOLLOW, RESOLVE_NO_SYMLINKS)
    case EXDEV:    // another mount (RESOLVE_NO_XDEV, CacheRoot's check)
    case ENOTDIR:  // a file or a link where a directory should be
    case ENXIO:    // a socket
      return failure(ConfigStatus::kNotSafe, err);
    default:
      return failure(ConfigStatus::kUnreadable, err);
  }
}

// Printable and not absurdly long: the name becomes part of a ZeroMQ topic
// that subscribers match by prefix and log.
bool plausible_model_name(const std::string& name) {
  return !name.empty() && name.size() <= kMaxModelNameBytes &&
         std::none_of(name.begin(), name.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u < 0x20 || u == 0x7f;
         });
}

ModelNameRead parse_config(const std::string& text) {
  const nlohmann::json doc =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return failure(ConfigStatus::kMalformed);
  }
  const auto it = doc.find("model_name");
  if (it == doc.end() || !it->is_string()) {
    return failure(ConfigStatus::kNoModelName);
  }
  ModelNameRead r;
  r.name = it->get<std::string>();
  r.status = plausible_model_name(r.name) ? ConfigStatus::kOk
                                          : ConfigStatus::kNoModelName;
  if (r.status != ConfigStatus::kOk) {
    r.name.clear();
  }
  return r;
}

std::string describe(std::string_view config_dir, const ModelNameRead& r) {
  std::string what = escape_bytes(config_dir) + "/" + kConfigFile + ": " +
                     config_status_name(r.status);
  if (r.err != 0) {
    what += " (" + describe_errno(r.err) + ")";
  }
  return what;
}

}  // namespace

std::optional<std::string_view> config_dir_of_block_dir(
    std::string_view dir_path) {
  const auto slash = dir_path.find('/');
  const std::string_view first = dir_path.substr(0, slash);
  if (auto config = config_dir_of_rank_dir(first)) {
    return config;  // current layout: "<model>_<12 hex>_r<rank>/..."
  }
  // Deep layout: "<model>/<12 hex>/tp_<n>/rank_<r>/auto/...". Blocks are
  // always at least one level below the digest directory.
  if (slash == std::string_view::npos || !is_plain_component(first)) {
    return std::nullopt;
  }
  const std::string_view rest = dir_path.substr(slash + 1);
  const auto slash2 = rest.find('/');
  if (slash2 == std::string_view::npos ||
      !is_config_digest(rest.substr(0, slash2))) {
    return std::nullopt;
  }
  return dir_path.substr(0, slash + 1 + slash2);
}

const char* config_status_name(ConfigStatus status) {
  switch (status) {
    case ConfigStatus::kOk:
      return "ok";
    case ConfigStatus::kMissing:
      return "missing";
    case ConfigStatus::kNotSafe:
      return "not a regular file reachable without links or mounts";
    case ConfigStatus::kUnreadable:
      return "unreadable";
    case ConfigStatus::kTooLarge:
      return "too large";
    case ConfigStatus::kMalformed:
      return "not a JSON object";
    case ConfigStatus::kNoModelName:
      return "no usable \"model_name\" string";
  }
  return "?";
}

ModelNameRead read_model_name(const CacheRoot& root,
                              std::string_view config_dir) {
  int err = 0;
  // For *at() calls only: O_PATH, resolved beneath the root.
  const UniqueFd dir = root.open_dir(config_dir, /*for_reading=*/false, err);
  if (!dir) {
    return from_errno(err);
  }
  // O_NONBLOCK: a FIFO planted as config.json must not hang the open.
  const UniqueFd file(
      ::openat(dir.get(), kConfigFile,
               O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (!file) {
    return from_errno(errno);
  }
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) {
    return from_errno(errno);
  }
  if (!S_ISREG(st.st_mode)) {
    return failure(ConfigStatus::kNotSafe);
  }
  if (st.st_size > static_cast<off_t>(kMaxConfigBytes)) {
    return failure(ConfigStatus::kTooLarge);
  }
  // Read one byte past the limit: the file may have grown since fstat.
  std::string text(kMaxConfigBytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(file.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return failure(ConfigStatus::kUnreadable, errno);
    }
    if (n == 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  if (got > kMaxConfigBytes) {
    return failure(ConfigStatus::kTooLarge);
  }
  text.resize(got);
  return parse_config(text);
}

ModelNames::ModelNames(RootLocation root, const Clock& clock,
                       TimeNs retry_after)
    : root_where_(std::move(root)), clock_(clock), retry_after_(retry_after) {}

ModelNameRead ModelNames::read(std::string_view config_dir) {
  ++reads_;
  if (!root_.valid() || root_.stale()) {
    int err = 0;
    root_ = CacheRoot::open(root_where_, err);
    if (!root_.valid()) {
      if (err != root_error_) {
        spdlog::warn("events: {}; model names cannot be read until it can",
                     sys_message("open", root_where_.path(), err));
        root_error_ = err;
      }
      return from_errno(err);
    }
    root_error_ = 0;
  }
  return read_model_name(root_, config_dir);
}

std::optional<std::string> ModelNames::lookup(std::string_view config_dir) {
  const TimeNs now = clock_.now();
  auto it = cache_.find(std::string(config_dir));
  if (it != cache_.end()) {
    if (it->second.name) {
      return it->second.name;
    }
    if (now < it->second.retry_at) {
      return std::nullopt;
    }
  }

  const ModelNameRead r = read(config_dir);
  const bool known = it != cache_.end();
  if (!known) {
    if (cache_.size() >= kMaxCachedDirs) {
      spdlog::debug(
          "events: more than {} config directories; forgetting "
          "the model names read so far",
          kMaxCachedDirs);
      cache_.clear();
    }
    it = cache_.emplace(std::string(config_dir), Entry{}).first;
  }
  Entry& e = it->second;
  if (r.status == ConfigStatus::kOk) {
    if (known) {
      spdlog::info("events: model name of {} is now known: {}",
                   escape_bytes(config_dir), escape_bytes(r.name));
    } else {
      spdlog::debug("events: model name of {}: {}", escape_bytes(config_dir),
                    escape_bytes(r.name));
    }
    e.name = r.name;
    e.status = r.status;
    return e.name;
  }
  // Warn once per directory and kind of problem; repeats go to debug.
  const bool news = !known || e.status != r.status;
  e.status = r.status;
  e.retry_at = now + retry_after_;
  const std::string what = describe(config_dir, r);
  if (news) {
    spdlog::warn(
        "events: no model name for the blocks of {}: {}; their deletions "
        "are not announced until it can be read (retried every {:.0f}s)",
        escape_bytes(config_dir), what, ns_to_seconds(retry_after_));
  } else {
    spdlog::debug("events: still no model name: {}", what);
  }
  return std::nullopt;
}

}  // namespace pvc
