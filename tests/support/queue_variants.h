// Adapters giving every queue variant one shape, so that each test runs
// against all of them (TEST_CASE_TEMPLATE over iocm_queue_variants<T>).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <chrono>

#include "iocm/blocking_queue.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"

namespace iocm_test {

/// Options for a queue of `producers` producer lanes of `capacity` records.
inline iocm::queue_options lane_options(std::size_t producers, std::size_t capacity = 64) {
  iocm::queue_options o;
  o.capacity = capacity;
  o.producer_lanes = producers;
  return o;
}

/// mpmc_queue, each producer holding a token (its own lane); with
/// lane_summary::on, the queue that keeps a summary of its non-empty lanes.
template <class T, iocm::lane_summary Summary = iocm::lane_summary::off>
struct lanes_variant {
  static constexpr const char* name =
      Summary == iocm::lane_summary::on ? "lanes with summary" : "lanes";
  using queue_type = iocm::mpmc_queue<T, std::atomic, Summary>;
  struct producer {
    typename queue_type::producer_token token;
  };
  struct consumer {
    typename queue_type::consumer_token token;
  };

  lanes_variant(std::size_t capacity, std::size_t producers, std::uint64_t first_position = 0)
      : q(make_options(capacity, producers, first_position)) {}
  producer make_producer(std::size_t) { return {q.make_producer()}; }
  consumer make_consumer(std::size_t) { return {q.make_consumer()}; }
  std::size_t enqueue(producer& p, const T* items, std::size_t n) {
    return q.try_enqueue_bulk(p.token, items, n);
  }
  std::size_t dequeue(consumer& c, T* out, std::size_t n) {
    return q.try_dequeue_bulk(c.token, out, n);
  }
  std::size_t capacity_per_producer() const { return q.capacity(); }
  std::size_t size_approx() const { return q.size_approx(); }

  static iocm::queue_options make_options(std::size_t capacity, std::size_t producers,
                                          std::uint64_t first_position) {
    iocm::queue_options o;
    o.capacity = capacity;
    o.producer_lanes = producers;
    o.first_position = first_position;
    o.summary_min_lanes = 0;  // with lane_summary::on, used however few the lanes
    return o;
  }
  queue_type q;
};

/// mpmc_queue with no tokens: every producer shares one Vyukov ring.
template <class T>
struct shared_variant {
  static constexpr const char* name = "shared";
  using queue_type = iocm::mpmc_queue<T>;
  struct producer {};
  struct consumer {};

  shared_variant(std::size_t capacity, std::size_t, std::uint64_t first_position = 0)
      : q(lanes_variant<T>::make_options(capacity, 0, first_position)) {}
  producer make_producer(std::size_t) { return {}; }
  consumer make_consumer(std::size_t) { return {}; }
  std::size_t enqueue(producer&, const T* items, std::size_t n) {
    return q.try_enqueue_bulk(items, n);
  }
  std::size_t dequeue(consumer&, T* out, std::size_t n) { return q.try_dequeue_bulk(out, n); }
  std::size_t capacity_per_producer() const { return q.capacity(); }
  std::size_t size_approx() const { return q.size_approx(); }
  queue_type q;
};

/// sharded_queue of two shards; producers and consumers alternate shards.
template <class T>
struct sharded_variant {
  static constexpr const char* name = "sharded";
  using queue_type = iocm::sharded_queue<iocm::mpmc_queue<T>>;
  struct producer {
    typename queue_type::producer_token token;
  };
  struct consumer {
    typename queue_type::consumer_token token;
  };

  sharded_variant(std::size_t capacity, std::size_t producers, std::uint64_t first_position = 0)
      : q(2, lanes_variant<T>::make_options(capacity, producers, first_position)) {}
  producer make_producer(std::size_t i) { return {q.make_producer(i % 2)}; }
  consumer make_consumer(std::size_t i) { return {q.make_consumer(i % 2)}; }
  std::size_t enqueue(producer& p, const T* items, std::size_t n) {
    return q.try_enqueue_bulk(p.token, items, n);
  }
  std::size_t dequeue(consumer& c, T* out, std::size_t n) {
    return q.try_dequeue_bulk(c.token, out, n);
  }
  std::size_t capacity_per_producer() const { return q.shard(0).capacity(); }
  std::size_t size_approx() const { return q.size_approx(); }
  queue_type q;
};

/// blocking_mpmc_queue, each producer holding a token; consumers wait up to
/// a millisecond (a wait that times out dequeues nothing, and the caller
/// comes back), after 8 polls, so that they really sleep and are woken.
template <class T>
struct blocking_variant {
  static constexpr const char* name = "blocking";
  using queue_type = iocm::blocking_mpmc_queue<T>;
  struct producer {
    typename queue_type::producer_token token;
  };
  struct consumer {
    typename queue_type::consumer_token token;
  };

  blocking_variant(std::size_t capacity, std::size_t producers, std::uint64_t first_position = 0)
      : q(lanes_variant<T>::make_options(capacity, producers, first_position), 8) {}
  producer make_producer(std::size_t) { return {q.make_producer()}; }
  consumer make_consumer(std::size_t) { return {q.make_consumer()}; }
  std::size_t enqueue(producer& p, const T* items, std::size_t n) {
    return q.try_enqueue_bulk(p.token, items, n);
  }
  std::size_t dequeue(consumer& c, T* out, std::size_t n) {
    return q.wait_dequeue_bulk(c.token, out, n, std::chrono::milliseconds(1));
  }
  std::size_t capacity_per_producer() const { return q.queue().capacity(); }
  std::size_t size_approx() const { return q.queue().size_approx(); }
  queue_type q;
};

}  // namespace iocm_test

#define IOCM_QUEUE_VARIANTS(T)                                                      \
  iocm_test::lanes_variant<T>, iocm_test::lanes_variant<T, iocm::lane_summary::on>, \
      iocm_test::shared_variant<T>, iocm_test::sharded_variant<T>
/// The stress tests' variants: the above, and the blocking face.
#define IOCM_QUEUE_STRESS_VARIANTS(T) IOCM_QUEUE_VARIANTS(T), iocm_test::blocking_variant<T>
