// What the cache writer's file and directory names mean.
//
// A block is "<16 hex>.bin", written first as "<block>_<decimal>.tmp" and
// renamed into place. Buckets are directories named by hex digits: the
// first level is 2 to 4 characters wide depending on the deployment, the
// second level may carry a "_g<group>" suffix. Recognition is deliberately
// loose where that is safe (any "*.bin" file is a cache file, so a layout
// change never hides the cache from the evictor) and strict where a mistake
// would delete or remove something that is not the writer's (temp files and
// removable directories must match the writer's patterns exactly).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pvc {

enum class FileKind : std::uint8_t {
  kOther,  // not the cache's; never indexed, never deleted
  kBlock,  // a cache block ("*.bin")
  kTemp,   // a writer's temp file ("*.bin_<digits>.tmp")
};

FileKind classify_file(std::string_view name);

// The 64-bit block hash of a name that is exactly "<16 lower-case hex>.bin".
std::optional<std::uint64_t> block_hash(std::string_view name);

// "<16 lower-case hex>.bin" for a block hash.
std::string block_name(std::uint64_t hash);

// The value of a first-level bucket name: all hex digits, 2 to 4 of them, or
// exactly `width` when width is not zero.
std::optional<unsigned> bucket_value(std::string_view name, unsigned width);

// Whether a directory is one the writer creates on demand and so may be
// removed once empty: hex digits optionally followed by "_g<digits>".
bool is_bucket_dir_name(std::string_view name);

// "<model>_<12 hex>_r<rank>" -> "<model>_<12 hex>", the directory that holds
// the model's config.json; nullopt for any other name.
std::optional<std::string_view> config_dir_of_rank_dir(std::string_view name);

}  // namespace pvc
