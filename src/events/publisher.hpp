// Announces every block the evictor deletes to the llm-d KV-cache index, as
// BlockRemoved events on a ZeroMQ PUB socket (wire format: kv_events.hpp),
// so that the index stops routing requests to blocks that are gone.
//
// Shape, and why:
// - The evictor calls on_deleted() on its own thread once per batch, and
//   deletion must not wait for publishing. on_deleted() therefore only
//   parses block hashes from the names and groups them by config directory
//   (string work, no I/O, no allocation per block beyond the vectors) and
//   hands the batch to a small publisher thread through a bounded queue.
//   The publisher thread does everything that may take time: reading a
//   model's config.json for its name (a file on a shared, possibly
//   network-backed volume; a direct send from the evictor thread would put
//   that read in front of the next unlink), msgpack encoding and the send.
// - The queue holds at most `max_queued_blocks` hashes. A batch that does
//   not fit is dropped whole and counted, never waited for. The publisher
//   thread drains the queue in microseconds per batch, so it only fills
//   when that thread is stuck on a hung config.json read.
// - ZeroMQ's own send queue is bounded by ZMQ_SNDHWM (`send_hwm` messages
//   per subscriber; PUB drops beyond it) and every send uses ZMQ_DONTWAIT:
//   with no subscriber, or a slow one, messages are dropped, not kept.
// - One message per model per batch: blocks of two config directories with
//   the same model name share a message. Blocks whose model name cannot be
//   read (see model_names.hpp) are not announced under a guessed name;
//   they are counted in blocks_without_model.
// - With tensor parallelism each rank has its own file of a block. The
//   first rank file deleted makes the block unloadable, so it is announced
//   then; a hash is listed once per message, and a later batch deleting
//   another rank's file announces it again, a removal of a block the index
//   no longer holds.
// - Sequence numbers start at 0 (as vLLM's publisher's do) and advance by
//   one per message this publisher tried to send, including messages it
//   dropped, so a subscriber sees a gap where something was lost. ZeroMQ's
//   own drops at the high-water mark also show as gaps.
// - stop() lets the thread send what is queued (microseconds per batch
//   unless a config.json read hangs), joins it and closes the socket with
//   a linger of `linger_ms`, so that a connected subscriber still gets the
//   last batch and shutdown waits no longer than that for the network.
//
// When the endpoint is empty the daemon does not construct a publisher, so
// no ZeroMQ context, socket or thread exists. The evictor never calls
// listeners in a dry run, so a dry run publishes nothing.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "events/model_names.hpp"
#include "evict/evictor.hpp"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace pvc {

struct PublisherOptions {
  std::string endpoint;     // ZeroMQ endpoint to bind, e.g. "tcp://*:5557"
  RootLocation cache_root;  // where rank and config directories live
  int send_hwm = 10000;     // ZMQ_SNDHWM, messages per subscriber
  int linger_ms = 100;      // ZMQ_LINGER at close
  std::size_t max_queued_blocks = 100000;  // ~1 MB of hashes
  TimeNs name_retry = 30 * kNsPerSecond;   // unreadable config.json
};

// Running totals, for logs and metrics.
struct EventStats {
  std::uint64_t messages_sent = 0;     // handed to ZeroMQ
  std::uint64_t blocks_announced = 0;  // block hashes in those messages
  // Messages lost before ZeroMQ took them: queue full, send refused, or
  // publisher not running. A batch dropped at the queue counts one
  // message per config directory in it.
  std::uint64_t messages_dropped = 0;
  std::uint64_t blocks_dropped = 0;  // block hashes in those messages
  // Blocks deleted but not announced because their model name is unknown:
  // no readable config.json, or not in a model directory at all.
  std::uint64_t blocks_without_model = 0;
};

class BlockEventPublisher final : public DeletionListener {
 public:
  BlockEventPublisher(PublisherOptions options, const Clock& clock);
  ~BlockEventPublisher() override;
  BlockEventPublisher(const BlockEventPublisher&) = delete;
  BlockEventPublisher& operator=(const BlockEventPublisher&) = delete;

  // Binds the PUB socket and starts the publisher thread. Throws
  // FatalError naming the endpoint when it cannot bind. Call once.
  void start();

  // Sends what is queued, stops the thread and closes the socket.
  // Idempotent; the destructor calls it.
  void stop();

  // The endpoint actually bound (a "*" port resolved), once started.
  const std::string& bound_endpoint() const { return bound_endpoint_; }

  // DeletionListener: called by the evictor after each batch of unlinks.
  void on_deleted(const std::vector<DeletedFile>& files) override;

  EventStats stats() const;

 private:
  // The blocks of one config directory within a batch.
  struct Group {
    std::string config_dir;
    std::vector<std::uint64_t> hashes;
  };
  struct Batch {
    double timestamp = 0;  // seconds since the epoch, when it was deleted
    std::vector<Group> groups;
    std::size_t blocks = 0;
  };
  struct Counters {
    std::atomic<std::uint64_t> messages_sent{0};
    std::atomic<std::uint64_t> blocks_announced{0};
    std::atomic<std::uint64_t> messages_dropped{0};
    std::atomic<std::uint64_t> blocks_dropped{0};
    std::atomic<std::uint64_t> blocks_without_model{0};
  };

  void run();
  void publish(const Batch& batch);
  bool send(const std::string& topic, const std::string& payload);
  void drop(std::uint64_t messages, std::uint64_t blocks);

  PublisherOptions options_;
  const Clock& clock_;
  std::unique_ptr<zmq::context_t> context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::string bound_endpoint_;
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable wake_;
  // Guarded by mutex_:
  std::deque<Batch> queue_;
  std::size_t queued_blocks_ = 0;
  std::uint64_t queue_gap_ = 0;  // messages dropped at the queue
  bool running_ = false;         // started and not stopping
  bool overflowing_ = false;     // dropping at the queue; to warn once
  bool stopping_ = false;

  std::atomic<bool> warned_layout_{false};

  // Publisher thread only (and stop() after the join).
  ModelNames names_;
  std::uint64_t next_seq_ = 0;
  bool warned_send_ = false;

  Counters counters_;
};

}  // namespace pvc
