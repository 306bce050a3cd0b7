// iocm/sharded_queue.h — N queues, one per NUMA node, composed so that a
// producer writes to the shard it names and a consumer drains its home shard
// first and then steals from the others.
//
// Fairness: a consumer looks at a remote shard first once every
// `steal_period` calls (rotating over the remote shards), so a shard with no
// consumers of its own is drained even while the home shard never empties.
// Bound: a non-empty shard is visited by every consumer within
// steal_period * (shards - 1) calls. A consumer takes at most `steal_batch`
// records from a remote shard per call, so stealing moves work abroad in
// small bites and leaves the rest to the shard's own consumers.
//
// Thread-safety and memory ordering: those of the shard queue type (see
// mpmc_queue.h); the composition adds no shared state of its own beyond what
// is read-only after construction.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <limits>
#include <memory>
#include <memory_resource>
#include <stdexcept>
#include <string>
#include <vector>

#include "iocm/mpmc_queue.h"

namespace iocm {

template <class Queue>
class sharded_queue {
 public:
  using value_type = typename Queue::value_type;
  using shard_type = Queue;

  /// Where shard i's memory comes from (e.g. a resource bound to NUMA node
  /// i). Returning null means the default resource.
  using memory_for_shard = std::function<std::pmr::memory_resource*(std::size_t shard)>;

  class producer_token {
   public:
    producer_token() = default;
    bool valid() const noexcept { return token_.valid(); }
    std::size_t shard() const noexcept { return shard_; }
    /// Records in this token's lane (Queue::producer_token::lane_size_approx).
    std::size_t lane_size_approx() const noexcept { return token_.lane_size_approx(); }

   private:
    friend class sharded_queue;
    producer_token(Queue* q, typename Queue::producer_token t, std::size_t shard)
        : queue_(q), token_(std::move(t)), shard_(shard) {}
    Queue* queue_ = nullptr;  // the shard itself: no lookup on the hot path
    typename Queue::producer_token token_;
    std::size_t shard_ = 0;
  };

  class consumer_token {
   public:
    consumer_token() = default;
    std::size_t home() const noexcept { return home_; }

   private:
    friend class sharded_queue;
    explicit consumer_token(Queue* home_queue, std::size_t home, std::size_t shards)
        : home_queue_(home_queue),
          home_(home),
          steal_next_(shards > 1 ? (home + 1) % shards : home) {
      per_shard_.resize(shards);
    }
    // Home first, inline: the common dequeue touches nothing else.
    Queue* home_queue_ = nullptr;
    typename Queue::consumer_token home_token_{};
    std::size_t home_ = 0;
    std::size_t steal_next_ = 0;
    unsigned calls_ = 0;
    std::vector<typename Queue::consumer_token> per_shard_;  // remote shards' (home's unused)
  };

  /// shards >= 1; each shard is a Queue built from `per_shard` with its
  /// memory from `memory(i)` when given. steal_period >= 1, steal_batch >= 1.
  sharded_queue(std::size_t shards, queue_options per_shard, const memory_for_shard& memory = {},
                unsigned steal_period = 16,
                std::size_t steal_batch = std::numeric_limits<std::size_t>::max())
      : steal_period_(steal_period),
        steal_batch_(steal_batch),
        first_(options_of(shards, per_shard, memory, 0)) {
    if (steal_period == 0)
      throw std::invalid_argument("iocm::sharded_queue: steal_period must be at least 1");
    if (steal_batch == 0)
      throw std::invalid_argument("iocm::sharded_queue: steal_batch must be at least 1");
    shards_.reserve(shards);
    shards_.push_back(&first_);
    for (std::size_t i = 1; i < shards; ++i) {
      rest_.push_back(std::make_unique<Queue>(options_of(shards, per_shard, memory, i)));
      shards_.push_back(rest_.back().get());
    }
  }

  // Tokens and shards_ hold the address of first_: the queue stays put.
  sharded_queue(const sharded_queue&) = delete;
  sharded_queue& operator=(const sharded_queue&) = delete;

  std::size_t shard_count() const noexcept { return shards_.size(); }
  Queue& shard(std::size_t i) noexcept { return *shards_[i]; }
  const Queue& shard(std::size_t i) const noexcept { return *shards_[i]; }

  /// A producer lane in shard `shard`. Throws std::out_of_range for a bad
  /// shard, std::runtime_error when that shard's lanes are all taken.
  producer_token make_producer(std::size_t shard) {
    check_shard(shard);
    return producer_token(shards_[shard], shards_[shard]->make_producer(), shard);
  }
  consumer_token make_consumer(std::size_t home) {
    check_shard(home);
    consumer_token c(shards_[home], home, shards_.size());
    c.home_token_ = shards_[home]->make_consumer();
    for (std::size_t s = 0; s < shards_.size(); ++s)
      if (s != home) c.per_shard_[s] = shards_[s]->make_consumer();
    return c;
  }

  std::size_t try_enqueue_bulk(producer_token& p, const value_type* items, std::size_t n) noexcept {
    return p.queue_->try_enqueue_bulk(p.token_, items, n);
  }
  bool try_enqueue(producer_token& p, const value_type& item) noexcept {
    return p.queue_->try_enqueue(p.token_, item);
  }
  /// Tokenless, into the named shard's shared lane.
  std::size_t try_enqueue_bulk(std::size_t shard, const value_type* items, std::size_t n) noexcept {
    return shards_[shard]->try_enqueue_bulk(items, n);
  }

  std::size_t try_dequeue_bulk(consumer_token& c, value_type* out, std::size_t max) noexcept {
    const std::size_t count = shards_.size();
    if (count == 1) return take_home(c, out, max);  // one node: a plain queue
    if (max == 0) return 0;
    if (++c.calls_ >= steal_period_) {
      // Periodic look abroad first, so that remote shards never starve.
      c.calls_ = 0;
      const std::size_t s = c.steal_next_;
      c.steal_next_ = next_remote(c, s);
      if (std::size_t n = take(c, s, out, std::min(max, steal_batch_))) return n;
    }
    if (std::size_t n = take_home(c, out, max)) return n;
    // Home is empty: steal, starting where the rotation stands.
    std::size_t s = c.steal_next_;
    for (std::size_t i = 0; i + 1 < count; ++i, s = next_remote(c, s))
      if (std::size_t n = take(c, s, out, std::min(max, steal_batch_))) return n;
    return 0;
  }
  bool try_dequeue(consumer_token& c, value_type& out) noexcept {
    if (shards_.size() == 1) return c.home_queue_->try_dequeue(c.home_token_, out);
    return try_dequeue_bulk(c, &out, 1) == 1;
  }

  bool empty_approx() const noexcept {
    for (auto& s : shards_)
      if (!s->empty_approx()) return false;
    return true;
  }

  std::size_t size_approx() const noexcept {
    std::size_t n = 0;
    for (auto& s : shards_) n += s->size_approx();
    return n;
  }

 private:
  std::size_t take_home(consumer_token& c, value_type* out, std::size_t max) noexcept {
    if (max == 1) return c.home_queue_->try_dequeue(c.home_token_, *out) ? 1 : 0;
    return c.home_queue_->try_dequeue_bulk(c.home_token_, out, max);
  }
  std::size_t take(consumer_token& c, std::size_t s, value_type* out, std::size_t max) noexcept {
    if (max == 1) return shards_[s]->try_dequeue(c.per_shard_[s], *out) ? 1 : 0;
    return shards_[s]->try_dequeue_bulk(c.per_shard_[s], out, max);
  }
  std::size_t next_remote(const consumer_token& c, std::size_t s) const noexcept {
    const std::size_t count = shards_.size();
    s = (s + 1) % count;
    return s == c.home_ ? (s + 1) % count : s;
  }
  void check_shard(std::size_t s) const {
    if (s >= shards_.size())
      throw std::out_of_range("iocm::sharded_queue: shard " + std::to_string(s) +
                              " does not exist (" + std::to_string(shards_.size()) + " shards)");
  }

  static queue_options options_of(std::size_t shards, const queue_options& per_shard,
                                  const memory_for_shard& memory, std::size_t i) {
    if (shards == 0) throw std::invalid_argument("iocm::sharded_queue: shards must be at least 1");
    queue_options o = per_shard;
    if (memory) o.memory = memory(i);
    return o;
  }

  // Read-only after construction. Shard 0 is a member, so a one-node
  // queue is laid out like a plain Queue.
  unsigned steal_period_;
  std::size_t steal_batch_;
  Queue first_;
  std::vector<std::unique_ptr<Queue>> rest_;  // shards 1..
  std::vector<Queue*> shards_;                // every shard, by index
};

}  // namespace iocm
