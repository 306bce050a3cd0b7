// iocm/blocking_queue.h — iocm::mpmc_queue with consumers that can wait:
// a consumer that finds it empty spins a little, then sleeps on a futex
// until a producer publishes, or until its timeout. For standalone users who
// would rather wait than spin (the engine's own notifiers park through
// core/src/idle_notifiers.h instead).
//
// Producers pay for the waiting only when somebody waits: after enqueueing
// they fence and read the count of sleepers; only when it is not 0 do they
// make the futex call. A consumer counts itself a sleeper, then looks at the
// queue once more, then sleeps. Either the producer's look sees the sleeper
// (and wakes it), or the consumer's look sees the records (and takes them):
// the two fences (B1, B2) leave no third case, so no wake-up is lost
// (tests/unit/blocking_queue_test.cpp fails when B1's look is removed).
//
// Everything else (order, capacity, tokens, memory) is mpmc_queue's.
// Linux only (futex).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <ctime>

#include "iocm/detail/backoff.h"
#include "iocm/detail/fence.h"
#include "iocm/mpmc_queue.h"

namespace iocm {

template <class T>
class blocking_mpmc_queue {
 public:
  using queue_type = mpmc_queue<T>;
  using value_type = T;
  using producer_token = typename queue_type::producer_token;
  using consumer_token = typename queue_type::consumer_token;

  /// `spin_polls`: dequeue attempts a waiting consumer makes before it
  /// sleeps (0: sleep at once), a pause apart at first and then a yield
  /// apart (detail::backoff): a consumer that waits on an oversubscribed
  /// machine hands the core to the producers it waits for.
  explicit blocking_mpmc_queue(const queue_options& options = {}, unsigned spin_polls = 128)
      : q_(options), spin_polls_(spin_polls) {}
  blocking_mpmc_queue(const blocking_mpmc_queue&) = delete;
  blocking_mpmc_queue& operator=(const blocking_mpmc_queue&) = delete;

  producer_token make_producer() { return q_.make_producer(); }
  consumer_token make_consumer() noexcept { return q_.make_consumer(); }

  /// As mpmc_queue's, then wakes as many sleeping consumers as records went
  /// in, if any sleeps.
  std::size_t try_enqueue_bulk(producer_token& p, const T* items, std::size_t n) noexcept {
    const std::size_t k = q_.try_enqueue_bulk(p, items, n);
    if (k != 0) wake(k);
    return k;
  }
  bool try_enqueue(producer_token& p, const T& item) noexcept {
    return try_enqueue_bulk(p, &item, 1) == 1;
  }
  /// Tokenless (the shared lane).
  std::size_t try_enqueue_bulk(const T* items, std::size_t n) noexcept {
    const std::size_t k = q_.try_enqueue_bulk(items, n);
    if (k != 0) wake(k);
    return k;
  }
  bool try_enqueue(const T& item) noexcept { return try_enqueue_bulk(&item, 1) == 1; }

  /// Never waits: mpmc_queue::try_dequeue_bulk.
  std::size_t try_dequeue_bulk(consumer_token& c, T* out, std::size_t max) noexcept {
    return q_.try_dequeue_bulk(c, out, max);
  }
  bool try_dequeue(consumer_token& c, T& out) noexcept { return q_.try_dequeue(c, out); }

  /// Dequeues up to max records, waiting for the first as long as `timeout`;
  /// returns how many (0: the timeout passed with the queue empty, or max
  /// is 0). A timeout of 0 or less only tries.
  std::size_t wait_dequeue_bulk(consumer_token& c, T* out, std::size_t max,
                                std::chrono::nanoseconds timeout) noexcept {
    return wait(c, out, max, timeout.count() <= 0 ? 0 : timeout.count());
  }
  /// Waits for as long as it takes (max must be at least 1).
  std::size_t wait_dequeue_bulk(consumer_token& c, T* out, std::size_t max) noexcept {
    return wait(c, out, max, forever);
  }
  bool wait_dequeue(consumer_token& c, T& out, std::chrono::nanoseconds timeout) noexcept {
    return wait_dequeue_bulk(c, &out, 1, timeout) == 1;
  }
  bool wait_dequeue(consumer_token& c, T& out) noexcept {
    return wait_dequeue_bulk(c, &out, 1) == 1;
  }

  /// Consumers asleep or about to sleep now (a snapshot).
  std::uint32_t sleepers() const noexcept { return sleepers_.load(std::memory_order_relaxed); }
  /// The queue itself: empty_approx, size_approx, capacity, lane_count.
  const queue_type& queue() const noexcept { return q_; }

 private:
  static constexpr std::int64_t forever = -1;

  void wake(std::size_t records) noexcept {
    // (B1) pairs with (B2): our records are published before we look for
    // sleepers.
    detail::store_load_fence(sleepers_);
    if (sleepers_.load(std::memory_order_relaxed) == 0) return;
    epoch_.fetch_add(1, std::memory_order_release);
    futex(FUTEX_WAKE_PRIVATE, records > INT_MAX ? INT_MAX : static_cast<std::uint32_t>(records),
          nullptr);
  }

  std::size_t wait(consumer_token& c, T* out, std::size_t max, std::int64_t timeout_ns) noexcept {
    if (max == 0) return 0;
    if (const std::size_t n = q_.try_dequeue_bulk(c, out, max); n != 0 || timeout_ns == 0) return n;
    // From here: the polls count against the timeout too.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
    detail::backoff pause;
    for (unsigned i = 0; i < spin_polls_; ++i) {
      pause.pause();
      if (const std::size_t n = q_.try_dequeue_bulk(c, out, max); n != 0) return n;
    }
    for (;;) {
      const std::uint32_t seen = epoch_.load(std::memory_order_acquire);
      // (B2) pairs with (B1): we count ourselves a sleeper before we look at
      // the queue the last time.
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      std::size_t n = q_.try_dequeue_bulk(c, out, max);
      if (n == 0) {
        if (timeout_ns == forever) {
          futex(FUTEX_WAIT_PRIVATE, seen, nullptr);
        } else {
          const auto left = deadline - std::chrono::steady_clock::now();
          if (left > std::chrono::nanoseconds::zero()) {
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
            const timespec ts{static_cast<std::time_t>(ns / 1'000'000'000),
                              static_cast<long>(ns % 1'000'000'000)};
            futex(FUTEX_WAIT_PRIVATE, seen, &ts);
          }
        }
        n = q_.try_dequeue_bulk(c, out, max);
      }
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      if (n != 0) return n;
      if (timeout_ns != forever && std::chrono::steady_clock::now() >= deadline) return 0;
    }
  }

  /// futex(2) on epoch_: FUTEX_WAIT returns at once when the epoch moved
  /// since `value` was read, on a wake, a signal or the timeout.
  void futex(int op, std::uint32_t value, const timespec* timeout) noexcept {
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
                  "a futex word is a plain 32-bit integer");
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&epoch_), op, value, timeout, nullptr, 0);
  }

  queue_type q_;
  const unsigned spin_polls_;
  // Written by consumers going to sleep and by producers that wake them;
  // apart from the lanes.
  alignas(cache_line_size) std::atomic<std::uint32_t> sleepers_{0};
  std::atomic<std::uint32_t> epoch_{0};
};

}  // namespace iocm
