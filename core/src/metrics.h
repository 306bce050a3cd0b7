// What the engine counts about itself (iocm_metrics, IIocmMetrics), beside
// what the ports count by kind (port_table.h: operations accepted and
// delivered): each counter has one writer at a time, the thread that owns
// it (a poller's thread, or whichever thread drives that poller's ring
// while it is inside OnComplete: the ring monitor, a pump), so counting is a
// load and a store, no locked instruction and no line shared with another
// writer. A read sums them all, relaxed: a snapshot, each counter exact, the
// sum of them not taken at one instant.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "iocm/cache_line.h"
#include "iocm/host_io.h"
#include "op_state.h"

namespace iocm::detail {

/// A count with one writer at a time.
class owned_counter {
 public:
  /// Returns the count before.
  std::uint64_t add(std::uint64_t n = 1) noexcept {
    const std::uint64_t was = v_.load(std::memory_order_relaxed);
    v_.store(was + n, std::memory_order_relaxed);
    return was;
  }
  /// Keeps the larger of the count and `n` (a high-water mark).
  void raise_to(std::uint64_t n) noexcept {
    if (n > v_.load(std::memory_order_relaxed)) v_.store(n, std::memory_order_relaxed);
  }
  std::uint64_t read() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

inline constexpr std::size_t op_kind_count = static_cast<std::size_t>(op_kind::aborted) + 1;
static_assert(op_kind_count == IOCM_METRIC_KINDS, "iocm_metric_kind follows op_kind");
static_assert(static_cast<int>(op_kind::post) == IOCM_KIND_POST &&
                  static_cast<int>(op_kind::aborted) == IOCM_KIND_ABORTED,
              "iocm_metric_kind follows op_kind");

/// One poller's counts. (What is accepted and delivered, by kind, the
/// ports' admission and delivery counts say: port_table.h.)
struct alignas(cache_line_size) poller_metrics {
  owned_counter harvest_sizes[IOCM_HARVEST_BUCKETS];  // their sum: the harvests
  owned_counter queue_high_water;  // records in its lane after every 16th avoided wake-up
  owned_counter wakeups_avoided;   // publishes that found no notifier asleep
  owned_counter refusals[IOCM_REFUSAL_KINDS];
  owned_counter takeovers;  // times another thread drove its ring during a callback

  /// A harvest of n > 0 completions: bucket floor(log2 n), the last open-ended.
  void harvested(std::size_t n) noexcept {
    harvest_sizes[std::min<std::size_t>(std::bit_width(n) - 1, IOCM_HARVEST_BUCKETS - 1)].add();
  }
  void refused(iocm_refusal_kind kind) noexcept { refusals[kind].add(); }
  /// One more publish that found no notifier asleep; true on the first and
  /// every 16th after it, when the lane's depth is sampled (two loads of
  /// lines the consumers write: not on every publish).
  bool wake_avoided() noexcept { return (wakeups_avoided.add() & 15) == 0; }
};

}  // namespace iocm::detail
