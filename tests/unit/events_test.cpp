// The llm-d BlockRemoved events: the payload decoded field by field with
// msgpack-cxx, model names read from config.json (cache, retry, refusals),
// and the publisher against a real SUB socket in this process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/sys_error.hpp"
#include "events/kv_events.hpp"
#include "events/model_names.hpp"
#include "events/publisher.hpp"
#include "layout/names.hpp"

namespace pvc {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kTop = 0xffffffffffffffffULL;
constexpr std::uint64_t kHalf = 0x8000000000000000ULL;  // 2^63

// ------------------------------------------------------------- payload --

struct Decoded {
  double timestamp = 0;
  std::vector<std::uint64_t> hashes;
};

// Decodes a payload the way the index does and checks every field's type.
void decode(const std::string& payload, Decoded& out) {
  ASSERT_GE(payload.size(), 2U);
  // fixarray of 3, then a float64 (0xcb), not a float32 (0xca).
  EXPECT_EQ(static_cast<unsigned char>(payload[0]), 0x93);
  EXPECT_EQ(static_cast<unsigned char>(payload[1]), 0xcb);

  std::size_t offset = 0;
  const msgpack::object_handle handle =
      msgpack::unpack(payload.data(), payload.size(), offset);
  EXPECT_EQ(offset, payload.size()) << "trailing bytes after the payload";
  const msgpack::object& root = handle.get();
  ASSERT_EQ(root.type, msgpack::type::ARRAY);
  ASSERT_EQ(root.via.array.size, 3U);

  const msgpack::object& ts = root.via.array.ptr[0];
  ASSERT_EQ(ts.type, msgpack::type::FLOAT64);
  out.timestamp = ts.via.f64;

  const msgpack::object& events = root.via.array.ptr[1];
  ASSERT_EQ(events.type, msgpack::type::ARRAY);
  ASSERT_EQ(events.via.array.size, 1U);

  const msgpack::object& event = events.via.array.ptr[0];
  ASSERT_NE(event.type, msgpack::type::BIN) << "event wrapped as binary";
  ASSERT_NE(event.type, msgpack::type::STR) << "event wrapped as string";
  ASSERT_EQ(event.type, msgpack::type::ARRAY);
  ASSERT_EQ(event.via.array.size, 3U);

  const msgpack::object& tag = event.via.array.ptr[0];
  ASSERT_EQ(tag.type, msgpack::type::STR);
  EXPECT_EQ(std::string(tag.via.str.ptr, tag.via.str.size), "BlockRemoved");

  const msgpack::object& hashes = event.via.array.ptr[1];
  ASSERT_EQ(hashes.type, msgpack::type::ARRAY);
  out.hashes.clear();
  for (std::uint32_t i = 0; i < hashes.via.array.size; ++i) {
    const msgpack::object& h = hashes.via.array.ptr[i];
    ASSERT_EQ(h.type, msgpack::type::POSITIVE_INTEGER) << "hash " << i;
    out.hashes.push_back(h.via.u64);
  }

  const msgpack::object& medium = event.via.array.ptr[2];
  ASSERT_EQ(medium.type, msgpack::type::STR);
  EXPECT_EQ(std::string(medium.via.str.ptr, medium.via.str.size),
            "SHARED_STORAGE");

  EXPECT_EQ(root.via.array.ptr[2].type, msgpack::type::NIL)
      << "data-parallel rank";
}

TEST(KvEvents, PayloadDecodesFieldByField) {
  // Every msgpack unsigned width, and both sides of 2^63.
  std::vector<std::uint64_t> hashes = {0,      1,       127,        128,
                                       0xffff, 0x10000, 0xffffffff, 1ULL << 32};
  hashes.insert(hashes.end(), {kHalf - 1, kHalf, kHalf + 1, kTop});
  const double ts = 1712345678.123456;
  const std::string payload = encode_block_removed(ts, hashes);
  Decoded d;
  ASSERT_NO_FATAL_FAILURE(decode(payload, d));
  EXPECT_EQ(d.timestamp, ts);  // float64 round-trips exactly
  EXPECT_EQ(d.hashes, hashes);
}

TEST(KvEvents, HashesFromTwoToTheSixtyThreeAreUint64NotNegative) {
  const std::vector<std::uint64_t> hashes = {kHalf, kTop};
  const std::string payload = encode_block_removed(1.5, hashes);
  // 0xcf is msgpack's uint64; 0xd3 (int64) would decode as negative.
  const std::string half = std::string("\xcf\x80", 2) + std::string(7, '\0');
  const std::string top = "\xcf" + std::string(8, '\xff');
  EXPECT_NE(payload.find(half), std::string::npos);
  EXPECT_NE(payload.find(top), std::string::npos);
  EXPECT_EQ(payload.find('\xd3'), std::string::npos);
}

TEST(KvEvents, WholeSecondTimestampsAreStillFloat64) {
  // msgpack-cxx's own pack_double() would write these as integers.
  const std::vector<std::uint64_t> one = {1};
  for (const double ts : {0.0, 1712345678.0, -1.0}) {
    Decoded d;
    ASSERT_NO_FATAL_FAILURE(decode(encode_block_removed(ts, one), d));
    EXPECT_EQ(d.timestamp, ts);
  }
}

TEST(KvEvents, EmptyHashListStillDecodes) {
  Decoded d;
  ASSERT_NO_FATAL_FAILURE(decode(encode_block_removed(0.5, {}), d));
  EXPECT_TRUE(d.hashes.empty());
}

TEST(KvEvents, TopicAndSequenceFrames) {
  EXPECT_EQ(event_topic("meta-llama/Llama-3-8B"),
            "kv@SHARED_STORAGE@meta-llama/Llama-3-8B");
  const auto seq = sequence_frame(0x0102030405060708ULL);
  EXPECT_EQ(seq, (std::array<unsigned char, 8>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(sequence_frame(0), (std::array<unsigned char, 8>{}));
  const auto top = sequence_frame(kTop);
  for (unsigned char b : top) {
    EXPECT_EQ(b, 0xff);
  }
}

// --------------------------------------------------------- model names --

TEST(ModelNamesLayout, ConfigDirOfBlockDir) {
  using std::nullopt;
  using Dir = std::optional<std::string_view>;
  EXPECT_EQ(config_dir_of_block_dir("llama_0123456789ab_r0/abc/de_g0"),
            Dir("llama_0123456789ab"));
  EXPECT_EQ(config_dir_of_block_dir("meta-llama_Llama-3_0123456789ab_r12"),
            Dir("meta-llama_Llama-3_0123456789ab"));
  // The deep layout of older deployments.
  EXPECT_EQ(config_dir_of_block_dir("org_m/0123456789ab/tp_1/rank_0/auto/a/b"),
            Dir("org_m/0123456789ab"));
  EXPECT_EQ(config_dir_of_block_dir(""), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("llama_0123456789ab"), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("lost+found/abc"), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("org_m/0123456789AB/tp_1"), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("org_m/0123456789ab"), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("../0123456789ab/tp_1"), nullopt);
  EXPECT_EQ(config_dir_of_block_dir("./0123456789ab/tp_1"), nullopt);
}

class TempRoot : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvc-events-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ / "kv";
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write_config(const std::string& config_dir, const std::string& text) {
    fs::create_directories(root_ / config_dir);
    std::ofstream(root_ / config_dir / "config.json") << text;
  }
  void write_model(const std::string& config_dir, const std::string& model) {
    write_config(config_dir,
                 R"({"model_name": ")" + model + R"(", "dtype": "bfloat16"})");
  }
  ModelNameRead read(const std::string& config_dir) {
    int err = 0;
    const CacheRoot root = CacheRoot::open(root_, err);
    EXPECT_EQ(err, 0);
    return read_model_name(root, config_dir);
  }

  fs::path dir_;
  fs::path root_;
};

using ModelNamesTest = TempRoot;

TEST_F(ModelNamesTest, ReadsTheModelNameOnceAndKeepsIt) {
  write_model("llama_0123456789ab", "meta-llama/Llama-3-8B");
  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), "meta-llama/Llama-3-8B");
  fs::remove(root_ / "llama_0123456789ab" / "config.json");
  clock.advance(3600 * kNsPerSecond);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), "meta-llama/Llama-3-8B");
  EXPECT_EQ(names.reads(), 1U);
}

TEST_F(ModelNamesTest, AMissingConfigIsRetriedAfterTheRetryPeriod) {
  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock, 30 * kNsPerSecond);
  EXPECT_EQ(read("llama_0123456789ab").status, ConfigStatus::kMissing);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), std::nullopt);
  EXPECT_EQ(names.reads(), 1U);

  // The writer creates config.json after its first blocks: not seen until
  // the retry period has passed, and not read in between.
  write_model("llama_0123456789ab", "meta-llama/Llama-3-8B");
  clock.advance(29 * kNsPerSecond);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), std::nullopt);
  EXPECT_EQ(names.reads(), 1U);
  clock.advance(1 * kNsPerSecond);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), "meta-llama/Llama-3-8B");
  EXPECT_EQ(names.reads(), 2U);
}

TEST_F(ModelNamesTest, AMissingRootIsRetriedToo) {
  fs::remove_all(root_);
  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock, 30 * kNsPerSecond);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), std::nullopt);
  fs::create_directories(root_);
  write_model("llama_0123456789ab", "meta-llama/Llama-3-8B");
  clock.advance(30 * kNsPerSecond);
  EXPECT_EQ(names.lookup("llama_0123456789ab"), "meta-llama/Llama-3-8B");
}

TEST_F(ModelNamesTest, MalformedConfigsGiveNoName) {
  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock);
  const struct {
    const char* text;
    ConfigStatus status;
  } cases[] = {
      {"{not json", ConfigStatus::kMalformed},
      {"", ConfigStatus::kMalformed},
      {R"(["model_name", "x"])", ConfigStatus::kMalformed},
      {R"({"model": "x"})", ConfigStatus::kNoModelName},
      {R"({"model_name": 5})", ConfigStatus::kNoModelName},
      {R"({"model_name": ""})", ConfigStatus::kNoModelName},
      {R"({"model_name": "a\nb"})", ConfigStatus::kNoModelName},
      {R"({"model_name": "a\u001bb"})", ConfigStatus::kNoModelName},
  };
  int n = 0;
  for (const auto& c : cases) {
    const std::string dir = "m" + std::to_string(n++) + "_0123456789ab";
    write_config(dir, c.text);
    EXPECT_EQ(read(dir).status, c.status) << c.text;
    EXPECT_EQ(names.lookup(dir), std::nullopt) << c.text;
  }
}

TEST_F(ModelNamesTest, LinksAndSpecialFilesAreNotFollowed) {
  // A config.json outside the root, reachable only through links.
  fs::create_directories(dir_ / "outside");
  std::ofstream(dir_ / "outside" / "config.json")
      << R"({"model_name": "leaked/secret"})";

  fs::create_directories(root_ / "link_0123456789ab");
  fs::create_symlink(dir_ / "outside" / "config.json",
                     root_ / "link_0123456789ab" / "config.json");
  fs::create_directory_symlink(dir_ / "outside", root_ / "dirl_0123456789ab");
  fs::create_directories(root_ / "fifo_0123456789ab");
  ASSERT_EQ(
      ::mkfifo((root_ / "fifo_0123456789ab" / "config.json").c_str(), 0600), 0);
  fs::create_directories(root_ / "dir_0123456789ab" / "config.json");

  EXPECT_EQ(read("link_0123456789ab").status, ConfigStatus::kNotSafe);
  EXPECT_EQ(read("dirl_0123456789ab").status, ConfigStatus::kNotSafe);
  EXPECT_EQ(read("fifo_0123456789ab").status, ConfigStatus::kNotSafe);
  EXPECT_EQ(read("dir_0123456789ab").status, ConfigStatus::kNotSafe);
  EXPECT_EQ(read("../outside").status, ConfigStatus::kNotSafe);

  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock);
  for (const char* d : {"link_0123456789ab", "dirl_0123456789ab",
                        "fifo_0123456789ab", "dir_0123456789ab"}) {
    EXPECT_EQ(names.lookup(d), std::nullopt) << d;
  }
}

TEST_F(ModelNamesTest, OversizedConfigIsRefused) {
  std::string big = R"({"model_name": "x", "pad": ")";
  big.append(kMaxConfigBytes, 'a');
  big += "\"}";
  write_config("big_0123456789ab", big);
  EXPECT_EQ(read("big_0123456789ab").status, ConfigStatus::kTooLarge);
}

TEST_F(ModelNamesTest, DeepLayoutConfig) {
  write_model("org_m/0123456789ab", "org/m");
  ManualClock clock(1000 * kNsPerSecond);
  ModelNames names({root_.string(), ""}, clock);
  const auto dir = config_dir_of_block_dir("org_m/0123456789ab/tp_1/rank_0/a");
  ASSERT_TRUE(dir);
  EXPECT_EQ(names.lookup(*dir), "org/m");
}

// ----------------------------------------------------------- publisher --

struct Received {
  std::string topic;
  std::uint64_t seq = 0;
  std::string payload;
};

std::uint64_t big_endian(const std::string& frame) {
  std::uint64_t v = 0;
  for (const char c : frame) {
    v = (v << 8) | static_cast<unsigned char>(c);
  }
  return v;
}

class PublisherTest : public TempRoot {
 protected:
  static constexpr const char* kLlama = "llama_0123456789ab";
  static constexpr const char* kLlama2 = "llama_ba9876543210";
  static constexpr const char* kQwen = "qwen_abcdef012345";
  static constexpr const char* kNoName = "mistral_111111111111";

  void SetUp() override {
    TempRoot::SetUp();
    write_model(kLlama, "meta-llama/Llama-3-8B");
    write_model(kLlama2, "meta-llama/Llama-3-8B");  // same model, other dir
    write_model(kQwen, "Qwen/Qwen2-7B");
    fs::create_directories(root_ / kNoName);  // no config.json
  }

  std::unique_ptr<BlockEventPublisher> start(std::size_t max_queued = 100000) {
    PublisherOptions o;
    o.endpoint = "tcp://127.0.0.1:*";
    o.cache_root = {root_.string(), ""};
    o.max_queued_blocks = max_queued;
    auto p = std::make_unique<BlockEventPublisher>(o, clock_);
    p->start();
    sub_.set(zmq::sockopt::subscribe, "kv@");
    sub_.connect(p->bound_endpoint());
    return p;
  }

  static DeletedFile block(const std::string& config_dir, std::uint64_t hash) {
    return {config_dir + "_r0/abc/de_g0", block_name(hash), 4096,
            DeleteReason::kAge};
  }

  // One whole message, or nullopt after `timeout_ms` without one.
  std::optional<Received> receive(int timeout_ms) {
    sub_.set(zmq::sockopt::rcvtimeo, timeout_ms);
    std::vector<std::string> frames;
    for (;;) {
      zmq::message_t part;
      if (!sub_.recv(part)) {
        EXPECT_TRUE(frames.empty()) << "message cut short";
        return std::nullopt;
      }
      frames.push_back(part.to_string());
      if (!part.more()) {
        break;
      }
    }
    EXPECT_EQ(frames.size(), 3U) << "frames per message";
    if (frames.size() != 3) {
      return std::nullopt;
    }
    EXPECT_EQ(frames[1].size(), 8U) << "sequence frame";
    return Received{frames[0], big_endian(frames[1]), frames[2]};
  }

  // A SUB socket misses what is published before its subscription reaches
  // the PUB. Publish a one-block batch until one arrives, then take the
  // stragglers; returns the last sequence number seen.
  std::uint64_t warm_up(BlockEventPublisher& p) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::optional<Received> got;
    while (!got && std::chrono::steady_clock::now() < deadline) {
      p.on_deleted({block(kLlama, 0xfeed)});
      got = receive(20);
    }
    EXPECT_TRUE(got) << "the SUB socket never received anything";
    std::uint64_t last = got ? got->seq : 0;
    while (auto more = receive(200)) {
      EXPECT_EQ(more->seq, last + 1);
      last = more->seq;
    }
    return last;
  }

  SystemClock clock_;  // the publisher thread reads it: no ManualClock
  zmq::context_t context_{1};
  zmq::socket_t sub_{context_, zmq::socket_type::sub};
};

TEST_F(PublisherTest, OneMessagePerModelPerBatchWithIncrementingSequence) {
  auto p = start();
  const std::uint64_t last = warm_up(*p);
  const EventStats before = p->stats();

  const double t0 = ns_to_seconds(clock_.now());
  p->on_deleted({
      block(kLlama, 1),
      block(kQwen, 2),
      block(kLlama, kHalf),
      {std::string(kLlama) + "_r0/abc/de_g0", block_name(3) + "_12345.tmp", 10,
       DeleteReason::kTemp},
      block(kLlama2, 4),  // same model name: same message
      block(kNoName, 5),  // no config.json: not announced
      {"lost+found", block_name(6), 10, DeleteReason::kAge},
      block(kQwen, kTop),
  });
  p->on_deleted({block(kQwen, 7)});
  const double t1 = ns_to_seconds(clock_.now());

  std::vector<Received> got;
  for (int i = 0; i < 3; ++i) {
    auto r = receive(5000);
    ASSERT_TRUE(r) << "message " << i;
    got.push_back(*r);
  }
  EXPECT_FALSE(receive(200)) << "more messages than models per batch";

  EXPECT_EQ(got[0].topic, "kv@SHARED_STORAGE@meta-llama/Llama-3-8B");
  EXPECT_EQ(got[1].topic, "kv@SHARED_STORAGE@Qwen/Qwen2-7B");
  EXPECT_EQ(got[2].topic, "kv@SHARED_STORAGE@Qwen/Qwen2-7B");
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].seq, last + 1 + i);
  }
  const std::vector<std::vector<std::uint64_t>> want = {
      {1, kHalf, 4}, {2, kTop}, {7}};
  for (std::size_t i = 0; i < got.size(); ++i) {
    Decoded d;
    ASSERT_NO_FATAL_FAILURE(decode(got[i].payload, d));
    EXPECT_EQ(d.hashes, want[i]);
    EXPECT_GE(d.timestamp, t0);
    EXPECT_LE(d.timestamp, t1);
  }

  const EventStats after = p->stats();
  EXPECT_EQ(after.messages_sent - before.messages_sent, 3U);
  EXPECT_EQ(after.blocks_announced - before.blocks_announced, 6U);
  EXPECT_EQ(after.blocks_without_model - before.blocks_without_model, 2U);
  EXPECT_EQ(after.messages_dropped, 0U);
  EXPECT_EQ(after.blocks_dropped, 0U);
}

TEST_F(PublisherTest, RankFilesOfOneBlockAreListedOnce) {
  auto p = start();
  const std::uint64_t last = warm_up(*p);
  DeletedFile rank1 = block(kLlama, 9);
  rank1.dir_path = std::string(kLlama) + "_r1/abc/de_g0";
  p->on_deleted({block(kLlama, 9), block(kLlama, 8), rank1});
  auto r = receive(5000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, last + 1);
  Decoded d;
  ASSERT_NO_FATAL_FAILURE(decode(r->payload, d));
  EXPECT_EQ(d.hashes, (std::vector<std::uint64_t>{9, 8}));
}

TEST_F(PublisherTest, ABatchThatDoesNotFitIsDroppedAndLeavesAGap) {
  auto p = start(/*max_queued=*/2);
  const std::uint64_t last = warm_up(*p);
  // Three blocks of two models never fit a queue of two: dropped whole,
  // two messages' worth, which the next message's sequence shows.
  p->on_deleted({block(kLlama, 1), block(kLlama, 2), block(kQwen, 3)});
  p->on_deleted({block(kQwen, 4)});
  auto r = receive(5000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->seq, last + 3);
  EXPECT_EQ(r->topic, "kv@SHARED_STORAGE@Qwen/Qwen2-7B");
  const EventStats s = p->stats();
  EXPECT_EQ(s.messages_dropped, 2U);
  EXPECT_EQ(s.blocks_dropped, 3U);
}

TEST_F(PublisherTest, NothingIsSentBeforeStartOrAfterStop) {
  PublisherOptions o;
  o.endpoint = "tcp://127.0.0.1:*";
  o.cache_root = {root_.string(), ""};
  BlockEventPublisher p(o, clock_);
  p.on_deleted({block(kLlama, 1)});
  EXPECT_EQ(p.stats().messages_dropped, 1U);
  p.start();
  p.stop();
  p.on_deleted({block(kLlama, 2)});
  EXPECT_EQ(p.stats().messages_dropped, 2U);
  EXPECT_EQ(p.stats().messages_sent, 0U);
}

TEST_F(PublisherTest, StopIsQuickWithQueuedWorkAndAConnectedSubscriber) {
  auto p = start();
  const std::uint64_t last = warm_up(*p);
  for (std::uint64_t i = 0; i < 100; ++i) {
    p->on_deleted({block(kLlama, 100 + i), block(kQwen, 1000 + i)});
  }
  const auto t0 = std::chrono::steady_clock::now();
  p->stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, std::chrono::milliseconds(500));
  // Everything queued was sent before the thread ended, and reached the
  // subscriber within the linger.
  EXPECT_EQ(p->stats().messages_sent, last + 1 + 200);
  std::uint64_t n = 0;
  while (receive(200)) {
    ++n;
  }
  EXPECT_EQ(n, 200U);
}

TEST_F(PublisherTest, AnEndpointThatCannotBeBoundStopsStartUp) {
  PublisherOptions o;
  o.cache_root = {root_.string(), ""};
  o.endpoint = "nonsense://x";
  BlockEventPublisher bad(o, clock_);
  EXPECT_THROW(bad.start(), FatalError);

  auto first = start();
  o.endpoint = first->bound_endpoint();  // already taken
  BlockEventPublisher taken(o, clock_);
  EXPECT_THROW(taken.start(), FatalError);
}

}  // namespace
}  // namespace pvc
