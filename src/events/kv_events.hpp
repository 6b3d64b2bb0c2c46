// The llm-d KV-cache event wire format, for the events this daemon can
// announce: blocks removed from the shared storage tier.
//
// vLLM publishes KV-cache events over ZeroMQ as three frames, and the llm-d
// KV-cache index subscribes to exactly that shape:
//
//   1. topic    "kv@SHARED_STORAGE@<model name>"   (UTF-8)
//   2. sequence uint64, 8 bytes big-endian, +1 per message
//   3. payload  msgpack [timestamp, [event, ...], data-parallel rank]
//
// with float64 seconds since the epoch as the timestamp, nil as the rank
// (the volume belongs to no rank) and each event a msgpack array tagged by
// its type name, as msgspec's array_like, tagged structs encode it:
//
//   ["BlockRemoved", [<block hash as uint64>, ...], "SHARED_STORAGE"]
//
// The event is an array embedded in place; wrapping it as a msgpack binary
// or string would make every subscriber drop it. Block hashes are the
// 64-bit values of the block file names, so hashes of 2^63 and above are
// encoded as msgpack uint64, never as negative integers.
//
// Encoding is a pure function so that the wire format is tested without
// sockets; the publisher sends what these return.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace pvc {

// The storage medium (and topic segment) of every event this daemon sends.
inline constexpr std::string_view kSharedStorageMedium = "SHARED_STORAGE";
inline constexpr std::string_view kTopicPrefix = "kv@SHARED_STORAGE@";
inline constexpr std::string_view kBlockRemovedTag = "BlockRemoved";

// "kv@SHARED_STORAGE@<model name>"
std::string event_topic(std::string_view model_name);

// The sequence frame: `seq` as 8 bytes, most significant first.
std::array<unsigned char, 8> sequence_frame(std::uint64_t seq);

// The payload of one message announcing that `hashes` were removed, all
// of one model: [timestamp, [["BlockRemoved", hashes, "SHARED_STORAGE"]],
// nil]. `hashes` may be empty (then the event lists none).
std::string encode_block_removed(double timestamp,
                                 std::span<const std::uint64_t> hashes);

}  // namespace pvc
