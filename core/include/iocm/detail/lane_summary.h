// iocm/detail/lane_summary.h — which lanes of an mpmc_queue may hold records,
// one bit a lane, so that a consumer's poll reads a few words instead of
// every lane (docs/QUEUE.md, "Many lanes").
//
// The protocol is an asymmetric Dekker handshake:
//   producer:  publish the record (the slot's release store);
//              compiler barrier (the light side);
//              load the lane's bit; if clear, set it (fetch_or).
//   sweeper:   clear the bits of lanes that look empty (fetch_and);
//              membarrier(PRIVATE_EXPEDITED) (the heavy side: every thread
//              of the process passes a full barrier before it returns);
//              look at each cleared lane again; set its bit if it holds one.
// A producer whose load ran before its CPU's barrier published before that
// barrier too, so the sweeper's second look sees the record; one whose load
// ran after it sees the cleared bit and sets it. So once a sweep has ended,
// every lane that holds a record has its bit set or a producer about to set
// it. While a sweep runs, the other consumers scan every lane instead (the
// sweeper may be preempted between its clear and its second look). A poll
// that began before the sweep did can still miss a record published in the
// sweep's window; the next poll after the sweep finds it. A thread that
// decides to sleep asks empty_approx(), which reads every lane.
//
// Producers pay a load and a branch a publish (a batch is one publish); the
// line of bits is written only on a lane's empty-to-non-empty transition and
// by sweeps. Without membarrier (kernels before 4.14, or a seccomp filter
// that refuses it) the first sweep puts its bits back and never ends: every
// poll then scans every lane, as a queue without the summary does.
#pragma once

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "iocm/cache_line.h"

namespace iocm::detail {

/// Whether this kernel lets the process use heavy_fence() (membarrier's
/// private expedited command; Linux 4.14 on, unless a seccomp filter says no).
inline bool heavy_fence_supported() noexcept {
  const long commands = ::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  return commands > 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
}

/// The heavy side of the asymmetric fence: true when every thread of this
/// process has passed a full barrier. Registers the process on first use.
inline bool heavy_fence() noexcept {
  static const bool registered =
      ::syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return registered && ::syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/// The light side: orders the compiler only; heavy_fence() orders the CPU.
inline void light_fence() noexcept { std::atomic_signal_fence(std::memory_order_seq_cst); }

class lane_summary_bits {
 public:
  /// Words of bits: enough for mpmc_queue's max_producer_lanes + 1 lanes.
  static constexpr std::size_t max_words = 65;
  /// Set bits of empty lanes that one poll must meet before it sweeps.
  static constexpr std::size_t sweep_min_stale = 8;

  lane_summary_bits() = default;
  lane_summary_bits(const lane_summary_bits&) = delete;
  lane_summary_bits& operator=(const lane_summary_bits&) = delete;

  /// `lanes` bits; sweeps at least `interval` apart.
  void set_up(std::size_t lanes, std::chrono::nanoseconds interval) noexcept {
    words_ = (lanes + 63) / 64;
    interval_ns_ = interval.count();
  }
  std::size_t words() const noexcept { return words_; }
  std::atomic<std::uint64_t>& word(std::size_t w) noexcept { return bits_[w]; }

  /// A producer, after publishing into lane `l`.
  void mark(std::size_t l) noexcept {
    light_fence();
    std::atomic<std::uint64_t>& w = bits_[l >> 6];
    const std::uint64_t bit = std::uint64_t{1} << (l & 63);
    // Relaxed: the bit carries no data; a consumer reads the record through
    // its slot's sequence (acquire), and a set bit whose record it cannot
    // see yet is one more lane it finds empty.
    if ((w.load(std::memory_order_relaxed) & bit) == 0) [[unlikely]]
      w.fetch_or(bit, std::memory_order_relaxed);
  }

  /// Whether a sweep is under way: consumers then scan every lane.
  /// Acquire pairs with end_sweep's release: a poll that sees the sweep
  /// over sees the bits its second look set again.
  bool sweeping() const noexcept { return sweeping_.load(std::memory_order_acquire) != 0; }

  /// Takes the sweep, if none ran in the last interval and none runs.
  bool begin_sweep() noexcept {
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
    if (now < next_sweep_ns_.load(std::memory_order_relaxed)) return false;
    std::uint32_t idle = 0;
    if (!sweeping_.compare_exchange_strong(idle, 1, std::memory_order_acquire,
                                           std::memory_order_relaxed))
      return false;
    next_sweep_ns_.store(now + interval_ns_, std::memory_order_relaxed);
    return true;
  }
  void end_sweep() noexcept { sweeping_.store(0, std::memory_order_release); }
  /// How many sweeps cleared a bit (a snapshot, for tests and benchmarks).
  std::uint64_t sweeps() const noexcept { return sweeps_.load(std::memory_order_relaxed); }
  void count_sweep() noexcept { sweeps_.fetch_add(1, std::memory_order_relaxed); }

 private:
  // Read by every poll, written on transitions: a line for each 512 lanes'
  // bits (nine for the most), and the sweep's state on a line of its own.
  alignas(cache_line_size) std::atomic<std::uint64_t> bits_[max_words] = {};
  std::size_t words_ = 0;
  std::int64_t interval_ns_ = 0;
  alignas(cache_line_size) std::atomic<std::uint32_t> sweeping_{0};
  std::atomic<std::int64_t> next_sweep_ns_{0};
  std::atomic<std::uint64_t> sweeps_{0};
};

}  // namespace iocm::detail
