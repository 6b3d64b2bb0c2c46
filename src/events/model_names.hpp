// Which model a cache block belongs to, by the model id in its config.json.
//
// The llm-d KV-cache index files blocks under the model id vLLM serves
// ("meta-llama/Llama-3-8B"), which the directory names only mangle ("/"
// becomes "_") and suffix with a config digest. The writer stores the real
// id as "model_name" in a config.json beside the rank directories:
//
//   R/<model>_<12 hex>/config.json          R/<model>_<12 hex>_r<rank>/...
//   R/<model>/<12 hex>/config.json          R/<model>/<12 hex>/tp_<n>/...
//
// (the current layout and the deep layout of older deployments). A block's
// directory therefore names its config directory without any I/O
// (config_dir_of_block_dir), and one read of that config.json names every
// block below it.
//
// Shape, and why:
// - config.json is opened beneath the cache root through CacheRoot (no
//   symbolic link, "..", or other mount on the way), the file itself with
//   O_NOFOLLOW and O_NONBLOCK, must be a regular file and is read only up to
//   kMaxConfigBytes: the volume is shared with other pods, and a planted
//   link or FIFO must neither leak another file's content into the events
//   nor hang the publisher.
// - Answers are cached per config directory. A name never changes for a
//   directory (the digest in its name is the config's), so a name is kept
//   for good; a failure is kept only for `retry_after`, because the writer
//   may create config.json after its first blocks or an operator may fix
//   it. The cache is cleared when it passes kMaxCachedDirs entries, which
//   only a tree that is not the writer's can make happen.
// - A model whose name cannot be read gets no events at all: an event under
//   a guessed name (the directory name, say) would never match the index's
//   entries and would only look like success. The caller counts these.
//
// Not thread-safe: the event publisher's thread is its only user. Reads
// happen only on a cache miss or an expired failure, never per block.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.hpp"
#include "fs/cache_root.hpp"

namespace pvc {

// Larger than any real config.json (a few hundred bytes) by far; anything
// bigger is not the writer's.
constexpr std::size_t kMaxConfigBytes = std::size_t{64} * 1024;
// Longest model name accepted; real model ids are a small fraction of it.
constexpr std::size_t kMaxModelNameBytes = 1024;

// The config directory (relative to the cache root) of the blocks in
// `dir_path` (relative to the cache root): "<model>_<12 hex>" for a path
// below "<model>_<12 hex>_r<rank>", "<model>/<12 hex>" for a path below
// "<model>/<12 hex>/<something>"; nullopt when the path is in neither
// layout.
std::optional<std::string_view> config_dir_of_block_dir(
    std::string_view dir_path);

enum class ConfigStatus {
  kOk,
  kMissing,     // no config directory or no config.json (ENOENT)
  kNotSafe,     // a link, a FIFO, a device, another mount on the way
  kUnreadable,  // any other open or read error (see `err`)
  kTooLarge,    // over kMaxConfigBytes
  kMalformed,   // not a JSON object
  kNoModelName  // no "model_name" string, or an empty or unprintable one
};

const char* config_status_name(ConfigStatus status);

struct ModelNameRead {
  ConfigStatus status = ConfigStatus::kMissing;
  int err = 0;       // errno for kMissing, kNotSafe, kUnreadable
  std::string name;  // for kOk
};

// One uncached read of `config_dir`/config.json beneath `root`.
ModelNameRead read_model_name(const CacheRoot& root,
                              std::string_view config_dir);

class ModelNames {
 public:
  // Cache directories with more entries than this are not the writer's.
  static constexpr std::size_t kMaxCachedDirs = 4096;

  // `root_path` is the cache root; it is opened on first use and reopened
  // when it was removed or replaced.
  ModelNames(RootLocation root, const Clock& clock,
             TimeNs retry_after = 30 * kNsPerSecond);

  // The model name of the config directory `config_dir` (as given by
  // config_dir_of_block_dir), or nullopt when it cannot be read now. The
  // first failure for a directory is logged as a warning, repeats at debug.
  std::optional<std::string> lookup(std::string_view config_dir);

  // Reads of config.json so far (cache misses and retries), for tests.
  std::size_t reads() const { return reads_; }

 private:
  struct Entry {
    std::optional<std::string> name;
    ConfigStatus status = ConfigStatus::kMissing;  // of the last read
    TimeNs retry_at = 0;                           // when name is empty
  };

  ModelNameRead read(std::string_view config_dir);

  RootLocation root_where_;
  const Clock& clock_;
  TimeNs retry_after_;
  CacheRoot root_;
  int root_error_ = 0;  // of the last failed open, to warn once
  std::unordered_map<std::string, Entry> cache_;
  std::size_t reads_ = 0;
};

}  // namespace pvc
