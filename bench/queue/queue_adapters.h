// One adapter per queue under comparison, each used the way its own
// documentation recommends. The harness sees:
//   Q(capacity, producers, consumers); Q::producer / Q::consumer handles;
//   push(p, x) -> bool; push_bulk(p, xs, n) -> count;
//   pop(c, x) -> bool;  pop_bulk(c, xs, n) -> count.
// `capacity` is the total number of records a queue may hold, the same for
// every implementation (iocm splits it across its producer lanes).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>
#include <tbb/concurrent_queue.h>
#include <boost/lockfree/queue.hpp>
#include <xenium/policy.hpp>
#include <xenium/vyukov_bounded_queue.hpp>
#if IOCM_HAVE_ATOMIC_QUEUE
#include <atomic_queue/atomic_queue.h>
#endif

#include "iocm/blocking_queue.h"
#include "iocm/completion.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"

namespace iocm_bench {

using iocm::completion;

/// Single-record queues get bulk operations as loops of single ones.
template <class Self>
struct loop_bulk {
  template <class P>
  std::size_t push_bulk(P& p, const completion* xs, std::size_t n) {
    std::size_t i = 0;
    while (i < n && static_cast<Self*>(this)->push(p, xs[i])) ++i;
    return i;
  }
  template <class C>
  std::size_t pop_bulk(C& c, completion* xs, std::size_t n) {
    std::size_t i = 0;
    while (i < n && static_cast<Self*>(this)->pop(c, xs[i])) ++i;
    return i;
  }
};

/// What the token-based iocm adapters share: a queue `q` of type Q used
/// through one producer token and one consumer token per thread.
template <class Q>
struct iocm_tokens {
  using queue = Q;
  struct producer {
    typename Q::producer_token t;
  };
  struct consumer {
    typename Q::consumer_token t;
  };
  template <class... Args>
  explicit iocm_tokens(Args&&... args) : q(std::forward<Args>(args)...) {}
  bool push(producer& p, const completion& x) { return q.try_enqueue(p.t, x); }
  std::size_t push_bulk(producer& p, const completion* xs, std::size_t n) {
    return q.try_enqueue_bulk(p.t, xs, n);
  }
  bool pop(consumer& c, completion& x) { return q.try_dequeue(c.t, x); }
  std::size_t pop_bulk(consumer& c, completion* xs, std::size_t n) {
    return q.try_dequeue_bulk(c.t, xs, n);
  }
  Q q;
};

/// iocm::mpmc_queue, a producer token (lane) per producer thread; with
/// lane_summary::on ("iocm_summary"), the queue that keeps a summary of its
/// non-empty lanes, so that an empty poll does not read every lane.
template <iocm::lane_summary Summary>
struct iocm_lanes_of : iocm_tokens<iocm::mpmc_queue<completion, std::atomic, Summary>> {
  static constexpr const char* name = Summary == iocm::lane_summary::on ? "iocm_summary" : "iocm";
  static iocm::queue_options options(std::size_t capacity, std::size_t producers) {
    iocm::queue_options o;
    o.capacity = capacity / (producers == 0 ? 1 : producers);
    o.producer_lanes = producers;
    return o;
  }
  using base = iocm_tokens<iocm::mpmc_queue<completion, std::atomic, Summary>>;
  iocm_lanes_of(std::size_t capacity, std::size_t producers, std::size_t)
      : base(options(capacity, producers)) {}
  typename base::producer make_producer() { return {this->q.make_producer()}; }
  typename base::consumer make_consumer() { return {this->q.make_consumer()}; }
};
using iocm_lanes = iocm_lanes_of<iocm::lane_summary::off>;
using iocm_summary = iocm_lanes_of<iocm::lane_summary::on>;

/// The alternative inner structure: no tokens, every producer on one
/// Vyukov ring claimed with a CAS (iocm's shared lane).
struct iocm_shared {
  static constexpr const char* name = "iocm_shared";
  using queue = iocm::mpmc_queue<completion>;
  struct producer {};
  struct consumer {
    queue::consumer_token t;
  };
  iocm_shared(std::size_t capacity, std::size_t, std::size_t)
      : q(iocm_lanes::options(capacity, 0)) {}
  producer make_producer() { return {}; }
  consumer make_consumer() { return {q.make_consumer()}; }
  bool push(producer&, const completion& x) { return q.try_enqueue(x); }
  std::size_t push_bulk(producer&, const completion* xs, std::size_t n) {
    return q.try_enqueue_bulk(xs, n);
  }
  bool pop(consumer& c, completion& x) { return q.try_dequeue(c.t, x); }
  std::size_t pop_bulk(consumer& c, completion* xs, std::size_t n) {
    return q.try_dequeue_bulk(c.t, xs, n);
  }
  queue q;
};

/// iocm::sharded_queue (the engine's completion queue) with `Shards` shards
/// on one NUMA node: producers and consumers are dealt to shards in turn, as
/// the engine deals pollers and notifiers to nodes. Shards == 1 is what the
/// engine builds on a one-node machine; its cost against iocm_lanes is the
/// price of sharding there.
template <std::size_t Shards>
struct iocm_sharded : iocm_tokens<iocm::sharded_queue<iocm::mpmc_queue<completion>>> {
  static constexpr const char* name = Shards == 1 ? "iocm_sharded1" : "iocm_sharded2";
  static iocm::queue_options options(std::size_t capacity, std::size_t producers) {
    iocm::queue_options o = iocm_lanes::options(capacity, producers);
    o.producer_lanes = (producers + Shards - 1) / Shards;
    return o;
  }
  iocm_sharded(std::size_t capacity, std::size_t producers, std::size_t)
      : iocm_tokens(Shards, options(capacity, producers), typename queue::memory_for_shard{}, 16u,
                    std::size_t{8}) {}
  producer make_producer() { return {q.make_producer(next_producer.fetch_add(1) % Shards)}; }
  consumer make_consumer() { return {q.make_consumer(next_consumer.fetch_add(1) % Shards)}; }
  std::atomic<std::size_t> next_producer{0}, next_consumer{0};
};

/// What the moodycamel adapters share: a queue `q` of type Q (its
/// ConcurrentQueue or BlockingConcurrentQueue) with an explicit producer
/// and consumer token per thread.
template <class Q>
struct moodycamel_with_tokens {
  using queue = Q;
  struct producer {
    moodycamel::ProducerToken t;
  };
  struct consumer {
    moodycamel::ConsumerToken t;
  };
  moodycamel_with_tokens(std::size_t capacity, std::size_t producers, std::size_t)
      : q(capacity, producers, 0) {}
  producer make_producer() { return {moodycamel::ProducerToken(q)}; }
  consumer make_consumer() { return {moodycamel::ConsumerToken(q)}; }
  bool push(producer& p, const completion& x) { return q.enqueue(p.t, x); }
  std::size_t push_bulk(producer& p, const completion* xs, std::size_t n) {
    return q.enqueue_bulk(p.t, xs, n) ? n : 0;
  }
  Q q;
};

/// moodycamel::ConcurrentQueue with tokens, one record at a time (its
/// batches are loops of single operations).
struct moodycamel_tokens : moodycamel_with_tokens<moodycamel::ConcurrentQueue<completion>>,
                           loop_bulk<moodycamel_tokens> {
  static constexpr const char* name = "moodycamel";
  using loop_bulk::pop_bulk;
  using loop_bulk::push_bulk;
  using moodycamel_with_tokens::moodycamel_with_tokens;
  bool pop(consumer& c, completion& x) { return q.try_dequeue(c.t, x); }
};

/// moodycamel with tokens and its bulk operations.
struct moodycamel_bulk : moodycamel_tokens {
  static constexpr const char* name = "moodycamel_bulk";
  using moodycamel_tokens::moodycamel_tokens;
  using moodycamel_with_tokens::push_bulk;
  std::size_t pop_bulk(consumer& c, completion* xs, std::size_t n) {
    return q.try_dequeue_bulk(c.t, xs, n);
  }
};

/// The blocking faces (queue/blocking_*): consumers that find the queue
/// empty wait, spinning briefly and then asleep, until a producer wakes
/// them or 10 ms pass (then the harness asks again). Both are named after
/// their non-blocking selves, the only two in those scenarios.
struct iocm_blocking {
  static constexpr const char* name = "iocm";
  using queue = iocm::blocking_mpmc_queue<completion>;
  struct producer {
    queue::producer_token t;
  };
  struct consumer {
    queue::consumer_token t;
  };
  iocm_blocking(std::size_t capacity, std::size_t producers, std::size_t)
      : q(iocm_lanes::options(capacity, producers)) {}
  producer make_producer() { return {q.make_producer()}; }
  consumer make_consumer() { return {q.make_consumer()}; }
  bool push(producer& p, const completion& x) { return q.try_enqueue(p.t, x); }
  std::size_t push_bulk(producer& p, const completion* xs, std::size_t n) {
    return q.try_enqueue_bulk(p.t, xs, n);
  }
  bool pop(consumer& c, completion& x) {
    return q.wait_dequeue(c.t, x, std::chrono::milliseconds(10));
  }
  std::size_t pop_bulk(consumer& c, completion* xs, std::size_t n) {
    return q.wait_dequeue_bulk(c.t, xs, n, std::chrono::milliseconds(10));
  }
  queue q;
};

/// moodycamel::BlockingConcurrentQueue (a semaphore counts the records),
/// with tokens.
struct moodycamel_blocking
    : moodycamel_with_tokens<moodycamel::BlockingConcurrentQueue<completion>> {
  static constexpr const char* name = "moodycamel";
  using moodycamel_with_tokens::moodycamel_with_tokens;
  bool pop(consumer& c, completion& x) { return q.wait_dequeue_timed(c.t, x, 10'000); }
  std::size_t pop_bulk(consumer& c, completion* xs, std::size_t n) {
    return q.wait_dequeue_bulk_timed(c.t, xs, n, 10'000);
  }
};

#if IOCM_HAVE_ATOMIC_QUEUE
/// max0x7ba/atomic_queue AtomicQueueB2 in its "optimist" mode: push and pop
/// claim a ticket with one atomic add and busy-wait on the slot, as its
/// author benchmarks it. (This version of the package has no
/// OptimistAtomicQueueB2 alias; push()/pop() are that mode.)
struct atomic_queue_optimist : loop_bulk<atomic_queue_optimist> {
  static constexpr const char* name = "atomic_queue";
  using queue = atomic_queue::AtomicQueueB2<completion>;
  struct producer {};
  struct consumer {};
  atomic_queue_optimist(std::size_t capacity, std::size_t, std::size_t)
      : q(static_cast<unsigned>(capacity)) {}
  producer make_producer() { return {}; }
  consumer make_consumer() { return {}; }
  bool push(producer&, const completion& x) {
    q.push(x);
    return true;
  }
  bool pop(consumer&, completion& x) {
    x = q.pop();
    return true;
  }
  queue q;
};
#endif

/// xenium's vyukov_bounded_queue.
struct xenium_vyukov : loop_bulk<xenium_vyukov> {
  static constexpr const char* name = "xenium_vyukov";
  using queue = xenium::vyukov_bounded_queue<completion>;
  struct producer {};
  struct consumer {};
  xenium_vyukov(std::size_t capacity, std::size_t, std::size_t) : q(capacity) {}
  producer make_producer() { return {}; }
  consumer make_consumer() { return {}; }
  bool push(producer&, const completion& x) { return q.try_push(x); }
  bool pop(consumer&, completion& x) { return q.try_pop(x); }
  queue q;
};

/// Boost.Lockfree's queue with a fixed, compile-time capacity (its nodes are
/// preallocated; boost limits capacity to 65535).
struct boost_lockfree : loop_bulk<boost_lockfree> {
  static constexpr const char* name = "boost_lockfree";
  static constexpr std::size_t fixed_capacity = 16384;
  using queue = boost::lockfree::queue<completion, boost::lockfree::capacity<fixed_capacity>>;
  struct producer {};
  struct consumer {};
  boost_lockfree(std::size_t, std::size_t, std::size_t) {}
  producer make_producer() { return {}; }
  consumer make_consumer() { return {}; }
  bool push(producer&, const completion& x) { return q.bounded_push(x); }
  bool pop(consumer&, completion& x) { return q.pop(x); }
  queue q;
};

/// oneTBB concurrent_bounded_queue, non-blocking try_ operations.
struct tbb_bounded : loop_bulk<tbb_bounded> {
  static constexpr const char* name = "tbb";
  using queue = tbb::concurrent_bounded_queue<completion>;
  struct producer {};
  struct consumer {};
  tbb_bounded(std::size_t capacity, std::size_t, std::size_t) {
    q.set_capacity(static_cast<std::ptrdiff_t>(capacity));
  }
  producer make_producer() { return {}; }
  consumer make_consumer() { return {}; }
  bool push(producer&, const completion& x) { return q.try_push(x); }
  bool pop(consumer&, completion& x) { return q.try_pop(x); }
  queue q;
};

/// The baseline everybody writes first: a ring under a std::mutex, with
/// bulk operations that take the lock once per batch.
struct mutex_ring {
  static constexpr const char* name = "mutex_ring";
  struct producer {};
  struct consumer {};
  mutex_ring(std::size_t capacity, std::size_t, std::size_t) : ring(capacity) {}
  producer make_producer() { return {}; }
  consumer make_consumer() { return {}; }
  std::size_t push_bulk(producer&, const completion* xs, std::size_t n) {
    std::lock_guard lock(m);
    std::size_t k = 0;
    for (; k < n && count < ring.size(); ++k, ++count) ring[(head + count) % ring.size()] = xs[k];
    return k;
  }
  std::size_t pop_bulk(consumer&, completion* xs, std::size_t n) {
    std::lock_guard lock(m);
    std::size_t k = 0;
    for (; k < n && count > 0; ++k, --count, head = (head + 1) % ring.size()) xs[k] = ring[head];
    return k;
  }
  bool push(producer& p, const completion& x) { return push_bulk(p, &x, 1) == 1; }
  bool pop(consumer& c, completion& x) { return pop_bulk(c, &x, 1) == 1; }
  std::mutex m;
  std::vector<completion> ring;
  std::size_t head = 0, count = 0;
};

}  // namespace iocm_bench
