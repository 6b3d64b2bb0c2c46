#include "events/publisher.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <unordered_set>
#include <utility>
#include <zmq.hpp>

#include "common/escape.hpp"
#include "common/sys_error.hpp"
#include "events/kv_events.hpp"
#include "layout/names.hpp"

namespace pvc {
namespace {

// Drops repeats, keeping the first of each: with tensor parallelism every
// rank has a file of the same block, and a batch may hold several of them.
void dedupe(std::vector<std::uint64_t>& hashes) {
  if (hashes.size() < 2) {
    return;
  }
  std::unordered_set<std::uint64_t> seen;
  seen.reserve(hashes.size());
  const auto end = std::remove_if(hashes.begin(), hashes.end(), [&](auto h) {
    return !seen.insert(h).second;
  });
  hashes.erase(end, hashes.end());
}

}  // namespace

BlockEventPublisher::BlockEventPublisher(PublisherOptions options,
                                         const Clock& clock)
    : options_(std::move(options)),
      clock_(clock),
      names_(options_.cache_root, clock, options_.name_retry) {}

BlockEventPublisher::~BlockEventPublisher() {
  stop();
}

void BlockEventPublisher::start() {
  if (context_) {
    return;
  }
  try {
    context_ = std::make_unique<zmq::context_t>(1);
    socket_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pub);
    socket_->set(zmq::sockopt::sndhwm, options_.send_hwm);
    socket_->set(zmq::sockopt::linger, options_.linger_ms);
    socket_->bind(options_.endpoint);
    bound_endpoint_ = socket_->get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    socket_.reset();
    context_.reset();
    throw FatalError(fmt::format(
        "events endpoint {} (--events-endpoint, STORAGE_EVENTS_ENDPOINT): "
        "cannot bind a ZeroMQ PUB socket there: {}",
        escape_bytes(options_.endpoint), e.what()));
  }
  {
    std::lock_guard lock(mutex_);
    running_ = true;
  }
  // The socket now belongs to this thread; starting it orders the set-up
  // above before the thread's first use.
  thread_ = std::thread([this] { run(); });
  spdlog::info(
      "events: publishing BlockRemoved events on {} as {}<model name> "
      "(send queue limit {} messages)",
      escape_bytes(bound_endpoint_), kTopicPrefix, options_.send_hwm);
}

void BlockEventPublisher::stop() {
  {
    std::lock_guard lock(mutex_);
    running_ = false;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  if (!context_) {
    return;
  }
  // Closing waits at most linger_ms for a connected subscriber to take
  // what is still queued; with none connected there is nothing to wait for.
  socket_.reset();
  context_.reset();
  const EventStats s = stats();
  spdlog::info(
      "events: stopped after sending {} messages for {} blocks; dropped {} "
      "messages for {} blocks; {} blocks had no model name",
      s.messages_sent, s.blocks_announced, s.messages_dropped, s.blocks_dropped,
      s.blocks_without_model);
}

void BlockEventPublisher::on_deleted(const std::vector<DeletedFile>& files) {
  // On the evictor's thread: parse and group only, then hand over.
  Batch batch;
  batch.timestamp = ns_to_seconds(clock_.now());
  std::uint64_t unplaced = 0;
  for (const DeletedFile& f : files) {
    const auto hash = block_hash(f.name);
    if (!hash) {
      continue;  // a temp file or an odd name: no block the index knows
    }
    const auto config_dir = config_dir_of_block_dir(f.dir_path);
    if (!config_dir) {
      ++unplaced;
      if (!warned_layout_.exchange(true)) {
        spdlog::warn(
            "events: deleted block {}/{} is not below a model directory "
            "(<model>_<12 hex>_r<rank>); deletions of such blocks are not "
            "announced (further ones at debug level)",
            escape_bytes(f.dir_path), escape_bytes(f.name));
      } else {
        spdlog::debug("events: not below a model directory: {}/{}",
                      escape_bytes(f.dir_path), escape_bytes(f.name));
      }
      continue;
    }
    auto group = std::find_if(
        batch.groups.begin(), batch.groups.end(),
        [&](const Group& g) { return g.config_dir == *config_dir; });
    if (group == batch.groups.end()) {
      batch.groups.push_back({std::string(*config_dir), {}});
      group = std::prev(batch.groups.end());
    }
    group->hashes.push_back(*hash);
    ++batch.blocks;
  }
  if (unplaced != 0) {
    counters_.blocks_without_model.fetch_add(unplaced,
                                             std::memory_order_relaxed);
  }
  if (batch.blocks == 0) {
    return;
  }

  const std::size_t blocks = batch.blocks;
  const std::size_t messages = batch.groups.size();
  enum class Fate { kQueued, kNotRunning, kFirstOverflow, kOverflow };
  Fate fate = Fate::kQueued;
  {
    std::lock_guard lock(mutex_);
    if (!running_) {
      fate = Fate::kNotRunning;
    } else if (queued_blocks_ + blocks <= options_.max_queued_blocks) {
      queued_blocks_ += blocks;
      queue_.push_back(std::move(batch));
      overflowing_ = false;
    } else {
      queue_gap_ += messages;
      fate = std::exchange(overflowing_, true) ? Fate::kOverflow
                                               : Fate::kFirstOverflow;
    }
  }
  switch (fate) {
    case Fate::kQueued:
      wake_.notify_one();
      return;
    case Fate::kNotRunning:
      spdlog::debug("events: publisher not running, dropped {} blocks", blocks);
      break;
    case Fate::kFirstOverflow:
      spdlog::warn(
          "events: more than {} blocks are waiting to be announced; "
          "dropping batches until the publisher catches up (further drops "
          "at debug level)",
          options_.max_queued_blocks);
      break;
    case Fate::kOverflow:
      spdlog::debug("events: queue full, dropped a batch of {} blocks", blocks);
      break;
  }
  drop(messages, blocks);
}

void BlockEventPublisher::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stopping, and everything queued is sent
    }
    std::deque<Batch> work;
    work.swap(queue_);
    queued_blocks_ = 0;
    const std::uint64_t gap = std::exchange(queue_gap_, 0);
    lock.unlock();
    next_seq_ += gap;  // messages lost at the queue show as a gap
    for (const Batch& batch : work) {
      publish(batch);
    }
    lock.lock();
  }
}

void BlockEventPublisher::publish(const Batch& batch) {
  // Config directories with the same model name share one message.
  struct ModelBlocks {
    std::string name;
    std::vector<std::uint64_t> hashes;
  };
  std::vector<ModelBlocks> models;
  for (const Group& g : batch.groups) {
    std::optional<std::string> name = names_.lookup(g.config_dir);
    if (!name) {
      counters_.blocks_without_model.fetch_add(g.hashes.size(),
                                               std::memory_order_relaxed);
      continue;
    }
    auto m =
        std::find_if(models.begin(), models.end(),
                     [&](const ModelBlocks& x) { return x.name == *name; });
    if (m == models.end()) {
      models.push_back({std::move(*name), g.hashes});
    } else {
      m->hashes.insert(m->hashes.end(), g.hashes.begin(), g.hashes.end());
    }
  }
  for (ModelBlocks& m : models) {
    dedupe(m.hashes);
    const std::string topic = event_topic(m.name);
    const std::string payload = encode_block_removed(batch.timestamp, m.hashes);
    const std::uint64_t seq = next_seq_;
    if (send(topic, payload)) {
      counters_.messages_sent.fetch_add(1, std::memory_order_relaxed);
      counters_.blocks_announced.fetch_add(m.hashes.size(),
                                           std::memory_order_relaxed);
      spdlog::debug("events: sent #{} {}: BlockRemoved, {} blocks, {} bytes",
                    seq, escape_bytes(topic), m.hashes.size(), payload.size());
    } else {
      drop(1, m.hashes.size());
    }
  }
}

bool BlockEventPublisher::send(const std::string& topic,
                               const std::string& payload) {
  const auto seq = sequence_frame(next_seq_++);
  const char* problem = nullptr;
  try {
    constexpr auto kMore = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
    // PUB never blocks and takes a message's frames all or none: once the
    // first is accepted, so are the others.
    if (!socket_->send(zmq::buffer(topic), kMore) ||
        !socket_->send(zmq::buffer(seq), kMore) ||
        !socket_->send(zmq::buffer(payload), zmq::send_flags::dontwait)) {
      problem = "the socket would block";
    }
  } catch (const zmq::error_t& e) {
    problem = e.what();
  }
  if (problem == nullptr) {
    return true;
  }
  if (!std::exchange(warned_send_, true)) {
    spdlog::warn(
        "events: cannot send on {}: {}; the message is dropped (further "
        "failures at debug level)",
        escape_bytes(bound_endpoint_), problem);
  } else {
    spdlog::debug("events: cannot send: {}", problem);
  }
  return false;
}

void BlockEventPublisher::drop(std::uint64_t messages, std::uint64_t blocks) {
  counters_.messages_dropped.fetch_add(messages, std::memory_order_relaxed);
  counters_.blocks_dropped.fetch_add(blocks, std::memory_order_relaxed);
}

EventStats BlockEventPublisher::stats() const {
  EventStats s;
  s.messages_sent = counters_.messages_sent.load(std::memory_order_relaxed);
  s.blocks_announced =
      counters_.blocks_announced.load(std::memory_order_relaxed);
  s.messages_dropped =
      counters_.messages_dropped.load(std::memory_order_relaxed);
  s.blocks_dropped = counters_.blocks_dropped.load(std::memory_order_relaxed);
  s.blocks_without_model =
      counters_.blocks_without_model.load(std::memory_order_relaxed);
  return s;
}

}  // namespace pvc
