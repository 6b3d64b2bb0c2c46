#include "events/kv_events.hpp"

#include <bit>
#include <msgpack.hpp>

namespace pvc {
namespace {

// msgpack::packer's output stream: appends to a string, so the payload
// needs no copy out of an sbuffer.
struct StringSink {
  std::string& out;
  void write(const char* data, std::size_t size) { out.append(data, size); }
};

// msgpack-cxx's pack_double() writes a double with an integral value
// (a timestamp on a whole second) as an integer; the index expects float64
// always, so its 9 bytes are written here.
void pack_float64(StringSink& sink, double d) {
  const auto bits = std::bit_cast<std::uint64_t>(d);
  char buf[9];
  buf[0] = static_cast<char>(0xcbU);
  for (int i = 0; i < 8; ++i) {
    buf[1 + i] = static_cast<char>((bits >> (56 - 8 * i)) & 0xffU);
  }
  sink.write(buf, sizeof buf);
}

void pack_str(msgpack::packer<StringSink>& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

}  // namespace

std::string event_topic(std::string_view model_name) {
  std::string topic;
  topic.reserve(kTopicPrefix.size() + model_name.size());
  topic.append(kTopicPrefix);
  topic.append(model_name);
  return topic;
}

std::array<unsigned char, 8> sequence_frame(std::uint64_t seq) {
  std::array<unsigned char, 8> frame{};
  for (std::size_t i = frame.size(); i-- > 0; seq >>= 8U) {
    frame[i] = static_cast<unsigned char>(seq & 0xffU);
  }
  return frame;
}

std::string encode_block_removed(double timestamp,
                                 std::span<const std::uint64_t> hashes) {
  std::string out;
  // Header bytes plus at most 9 per hash: one allocation.
  out.reserve(64 + 9 * hashes.size());
  StringSink sink{out};
  msgpack::packer<StringSink> pk(sink);
  pk.pack_array(3);
  // The packer writes straight to the sink, so bytes written to the sink
  // directly land in order.
  pack_float64(sink, timestamp);
  pk.pack_array(1);  // the events
  pk.pack_array(3);  // the event, in place
  pack_str(pk, kBlockRemovedTag);
  pk.pack_array(static_cast<std::uint32_t>(hashes.size()));
  for (const std::uint64_t hash : hashes) {
    pk.pack_uint64(hash);  // smallest unsigned form; >= 2^63 as uint64
  }
  pack_str(pk, kSharedStorageMedium);
  pk.pack_nil();  // data-parallel rank: the volume belongs to none
  return out;
}

}  // namespace pvc
