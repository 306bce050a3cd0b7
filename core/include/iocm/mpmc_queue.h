// iocm/mpmc_queue.h — a bounded, lock-free MPMC queue built for iocm's
// completion hand-off: a few producers (pollers) that each write batches,
// a few consumers (notifiers) that each take batches.
//
// Shape: one lane (a bounded ring, see detail/lane.h) per producer token, plus
// one shared lane for producers without a token. A token's owner is the only
// writer of its lane, so enqueueing through a token costs no atomic
// read-modify-write at all; consumers claim runs of records with one CAS.
// A token's lane found full stays closed to it until over a quarter is free.
// A consumer keeps to the lane that last gave it records, and moves on after
// `consumer_burst` records from it in a row so that no lane is starved.
//
// Many lanes: a queue made with lane_summary::on also keeps one bit a lane
// saying which lanes may hold records (detail/lane_summary.h), so that an
// empty poll reads those words instead of every lane. It costs producers a
// load and a branch a publish, which is why it is a choice of type and not
// of options: the queue without it does not pay a branch to ask.
//
// Order: FIFO per producer (per token; tokenless producers are FIFO each, as
// they share one Vyukov ring). No order across producers is promised.
//
// Thread-safety: every member function is safe to call from any thread,
// except that a producer_token is used by one thread at a time and a
// consumer_token likewise. Construction and destruction are not concurrent
// with anything.
//
// Memory ordering: a record is handed over through its slot's sequence
// number (release by the writer, acquire by the reader); see detail/lane.h.
// Nothing else orders memory, so a record is the only thing published by
// enqueueing it.
//
// Memory: all storage is allocated at construction from the
// std::pmr::memory_resource in queue_options, cache-line aligned (checked at
// run time); enqueue and dequeue never allocate.
#pragma once

#include <atomic>
#include <bit>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "iocm/cache_line.h"
#include "iocm/detail/lane.h"
#include "iocm/detail/lane_summary.h"

namespace iocm {

/// Construction parameters of mpmc_queue (and of each shard of
/// sharded_queue). The one place where a queue is tuned.
struct queue_options {
  /// Records each lane holds; rounded up to a power of two, and to at least 2
  /// (with one slot, "published for p" and "free for p + 1" would be the
  /// same sequence number). Must be >= 1.
  std::size_t capacity = 4096;
  /// Producer tokens that can exist at once (each owns a lane). 0 makes a
  /// queue with only the shared lane: a plain Vyukov ring.
  std::size_t producer_lanes = 1;
  /// Records a consumer takes from one lane in a row before it looks at the
  /// next lane first (fairness across producers; the batch that reaches the
  /// count ends the run). Must be >= 1. The default is measured, not
  /// derived: shorter runs lose, and longer ones win in some scenarios and
  /// lose in others (docs/QUEUE.md, "How long a consumer stays").
  unsigned consumer_burst = 256;
  /// Where the lanes live; null means std::pmr::get_default_resource().
  /// The resource must honour alignments up to cache_line_size.
  std::pmr::memory_resource* memory = nullptr;
  /// First position of every lane. Tests set it near 2^64 to prove the
  /// indices wrap correctly; leave it at 0 otherwise.
  std::uint64_t first_position = 0;
  /// (Last, so that positional initialisers written before it still mean
  /// what they said.) A queue made with lane_summary::on uses its summary from this many
  /// lanes (the shared one included) on; below, its polls read every lane,
  /// which costs no more there, and its producers mark nothing.
  std::size_t summary_min_lanes = 16;
  /// With the summary: the shortest time between two sweeps (each a
  /// membarrier, which interrupts every CPU running a thread of this
  /// process).
  std::chrono::nanoseconds summary_sweep_interval = std::chrono::milliseconds(1);
};

/// Whether an mpmc_queue keeps a summary of its non-empty lanes.
enum class lane_summary { off, on };

template <class T, template <class> class Atom = std::atomic,
          lane_summary Summary = lane_summary::off>
class mpmc_queue {
  static_assert(std::is_trivially_copyable_v<T>, "iocm::mpmc_queue moves records as bytes");
  static_assert(Atom<std::uint64_t>::is_always_lock_free, "positions must be lock-free atomics");
  // The summary's heavy fence is the kernel's; a model checker cannot see it.
  static_assert(Summary == lane_summary::off ||
                    std::is_same_v<Atom<std::uint64_t>, std::atomic<std::uint64_t>>,
                "lane_summary::on needs std::atomic");
  static constexpr bool summarized = Summary == lane_summary::on;

  using lane_type = detail::lane<T, Atom>;
  using slot_type = typename lane_type::slot_type;

 public:
  using value_type = T;
  static constexpr std::size_t max_producer_lanes = 4096;
  static constexpr std::size_t no_mark = ~std::size_t{0};  // a token whose lane has no bit

  /// Owns one lane; move-only. Destroying it gives the lane back (records
  /// still in it stay and will be dequeued).
  class producer_token {
   public:
    producer_token() = default;
    producer_token(producer_token&& o) noexcept
        : lane_(std::exchange(o.lane_, nullptr)), index_(o.index_) {}
    producer_token& operator=(producer_token&& o) noexcept {
      if (this != &o) {
        reset();
        lane_ = std::exchange(o.lane_, nullptr);
        index_ = o.index_;
      }
      return *this;
    }
    ~producer_token() { reset(); }
    bool valid() const noexcept { return lane_ != nullptr; }
    /// Records in this token's lane, published and not yet taken (a
    /// snapshot: two loads, no write).
    std::size_t lane_size_approx() const noexcept {
      return lane_ != nullptr ? static_cast<std::size_t>(lane_->size_approx()) : 0;
    }
    void reset() noexcept {
      if (lane_ != nullptr) std::exchange(lane_, nullptr)->release_ownership();
    }

   private:
    friend class mpmc_queue;
    producer_token(lane_type* l, std::size_t index) noexcept : lane_(l), index_(index) {}
    lane_type* lane_ = nullptr;
    std::size_t index_ = no_mark;  // the lane's bit in the summary
  };

  /// A consumer's place in the lane rotation. Cheap; one per consumer thread.
  struct consumer_token {
    std::size_t lane = 0;
    std::size_t streak = 0;    // records taken from `lane` in a row
    unsigned stale_polls = 0;  // summary: empty polls that met a set bit of an empty lane
  };

  explicit mpmc_queue(const queue_options& options = {}) : burst_(options.consumer_burst) {
    if (options.capacity == 0)
      throw std::invalid_argument("iocm::mpmc_queue: capacity must be at least 1");
    constexpr std::size_t max_capacity = std::size_t{1} << 40;  // positions stay far below 2^63
    if (options.capacity > max_capacity ||
        options.capacity > std::numeric_limits<std::size_t>::max() / sizeof(slot_type))
      throw std::length_error("iocm::mpmc_queue: capacity " + std::to_string(options.capacity) +
                              " is larger than a lane can address (2^40 records)");
    if (options.producer_lanes > max_producer_lanes)
      throw std::invalid_argument("iocm::mpmc_queue: producer_lanes " +
                                  std::to_string(options.producer_lanes) + " exceeds " +
                                  std::to_string(max_producer_lanes));
    if (options.consumer_burst == 0)
      throw std::invalid_argument("iocm::mpmc_queue: consumer_burst must be at least 1");

    memory_ = options.memory != nullptr ? options.memory : std::pmr::get_default_resource();
    capacity_ = std::bit_ceil(options.capacity < 2 ? std::size_t{2} : options.capacity);
    lane_count_ = options.producer_lanes + 1;  // lane 0 is the shared lane
    if constexpr (summarized) {
      summary_used_ = lane_count_ >= options.summary_min_lanes;
      summary_.set_up(lane_count_, options.summary_sweep_interval);
    }
    const std::size_t slot_bytes = capacity_ * sizeof(slot_type);

    lanes_ = static_cast<lane_type*>(allocate(lane_count_ * sizeof(lane_type)));
    std::size_t built = 0;
    try {
      for (; built < lane_count_; ++built) {
        auto* slots = static_cast<slot_type*>(allocate(slot_bytes));
        new (&lanes_[built]) lane_type(slots, capacity_, options.first_position);
      }
    } catch (...) {
      release(built);
      throw;
    }
  }

  mpmc_queue(const mpmc_queue&) = delete;
  mpmc_queue& operator=(const mpmc_queue&) = delete;
  ~mpmc_queue() { release(lane_count_); }

  /// Claims a producer lane. Throws std::runtime_error when all
  /// producer_lanes are taken.
  producer_token make_producer() {
    for (std::size_t i = 1; i < lane_count_; ++i)
      if (lanes_[i].try_own()) return producer_token(&lanes_[i], summary_used_ ? i : no_mark);
    throw std::runtime_error("iocm::mpmc_queue: all " + std::to_string(lane_count_ - 1) +
                             " producer lanes are in use");
  }

  /// A consumer token whose rotation starts at a different lane than the
  /// previous one's, so that consumers do not all contend on one lane's head.
  /// (A default-constructed consumer_token works too; it starts at lane 0.)
  consumer_token make_consumer() noexcept {
    // Relaxed: only spreads starting points; any value is correct.
    const std::size_t n = consumers_made_.fetch_add(1, std::memory_order_relaxed);
    return consumer_token{lane_count_ == 1 ? 0 : 1 + n % (lane_count_ - 1), 0};
  }

  /// Enqueues up to n records in order; returns how many fit (0..n). Wait-free.
  /// A lane found full takes nothing until more than a quarter of it is
  /// free again (detail/lane.h, refill_gap()); try_enqueue likewise.
  std::size_t try_enqueue_bulk(producer_token& p, const T* items, std::size_t n) noexcept {
    assert(p.valid() && owns_lane(p.lane_) && "token from another queue or moved-from");
    assert((items != nullptr || n == 0) && "null items with n > 0");
    const std::size_t k = p.lane_->enqueue_owned(items, n);
    if constexpr (summarized)
      if (p.index_ != no_mark && k != 0) [[unlikely]]
        summary_.mark(p.index_);
    return k;
  }
  bool try_enqueue(producer_token& p, const T& item) noexcept {
    assert(p.valid() && owns_lane(p.lane_) && "token from another queue or moved-from");
    const bool put = p.lane_->enqueue_one_owned(item);
    if constexpr (summarized)
      if (p.index_ != no_mark && put) [[unlikely]]
        summary_.mark(p.index_);
    return put;
  }

  /// Tokenless: through the shared lane (lock-free; producers contend on one
  /// CAS). Returns how many of the n records fit.
  std::size_t try_enqueue_bulk(const T* items, std::size_t n) noexcept {
    assert((items != nullptr || n == 0) && "null items with n > 0");
    if (n == 0) return 0;
    const std::size_t k = lanes_[0].enqueue_shared(items, n);
    if constexpr (summarized)
      if (summary_used_ && k != 0) [[unlikely]]
        summary_.mark(0);
    return k;
  }
  bool try_enqueue(const T& item) noexcept { return try_enqueue_bulk(&item, 1) == 1; }

  /// Dequeues up to max records; returns how many (0 when every lane looked
  /// empty; with the summary, a poll that began before a sweep may miss a
  /// record published during it, which the next one finds). Records of one
  /// lane come out in order. Lock-free.
  std::size_t try_dequeue_bulk(consumer_token& c, T* out, std::size_t max) noexcept {
    assert((out != nullptr || max == 0) && "null out with max > 0");
    if (max == 0) return 0;
    if constexpr (summarized)
      if (summary_used_ && !summary_.sweeping()) [[unlikely]]
        return dequeue_summarized(c, out, max);
    return dequeue_scanning(c, out, max);
  }
  bool try_dequeue(consumer_token& c, T& out) noexcept {
    // The common case first: the lane we stayed on has a record.
    if (c.lane < lane_count_ && c.streak < burst_ - 1) {
      const auto t = lanes_[c.lane].dequeue_one_once(out);
      if (t == lane_type::take::taken) {
        ++c.streak;
        return true;
      }
      // Another consumer took it first: it is working this lane, so look
      // at the next one before coming back.
      if (t == lane_type::take::contended) c.lane = next(c.lane);
    }
    return try_dequeue_bulk(c, &out, 1) == 1;
  }

  /// Tokenless dequeue: a per-thread rotation stands in for the token.
  std::size_t try_dequeue_bulk(T* out, std::size_t max) noexcept {
    thread_local consumer_token rotation;
    return try_dequeue_bulk(rotation, out, max);
  }
  bool try_dequeue(T& out) noexcept { return try_dequeue_bulk(&out, 1) == 1; }

  /// True when no lane has a record ready at its head (a snapshot). Reads
  /// every lane, with or without a summary: a thread about to sleep asks it
  /// after its own fence, and the summary's bits are not ordered by that.
  bool empty_approx() const noexcept {
    for (std::size_t i = 0; i < lane_count_; ++i)
      if (!lanes_[i].looks_empty()) return false;
    return true;
  }

  /// Records in the queue; exact when no thread is enqueueing or dequeueing.
  std::size_t size_approx() const noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < lane_count_; ++i) n += lanes_[i].size_approx();
    return n;
  }

  /// Records one lane holds (a power of two).
  std::size_t capacity() const noexcept { return capacity_; }
  /// Lanes including the shared one.
  std::size_t lane_count() const noexcept { return lane_count_; }
  /// Sweeps that cleared the bits of empty lanes (0 without a summary).
  std::uint64_t summary_sweeps() const noexcept {
    if constexpr (summarized)
      return summary_.sweeps();
    else
      return 0;
  }

 private:
  /// After taking n records from lane l (`moved`: not the lane the call
  /// started at): where the consumer's next call starts.
  void rotate(consumer_token& c, std::size_t l, bool moved, std::size_t n) noexcept {
    if (moved) {
      c.lane = l;
      c.streak = 0;
    }
    // No overflow: streak stays below consumer_burst (< 2^32) between
    // calls, and n is at most a lane's capacity (<= 2^40).
    c.streak += n;
    if (c.streak >= burst_) {
      // Enough records from this lane: the next call starts at the next
      // one, so every non-empty lane is visited within lane_count runs of
      // about consumer_burst records.
      c.streak = 0;
      c.lane = next(l);
    }
  }

  /// Every lane in turn, from the consumer's.
  std::size_t dequeue_scanning(consumer_token& c, T* out, std::size_t max) noexcept {
    std::size_t l = c.lane < lane_count_ ? c.lane : 0;
    for (std::size_t i = 0; i < lane_count_; ++i) {
      if (const std::size_t n = lanes_[l].dequeue(out, max); n != 0) {
        if (lane_count_ != 1)
          rotate(c, l, i != 0, n);
        else
          c.streak = 0;  // one lane: nowhere to turn; keeps try_dequeue's fast path open
        return n;
      }
      l = next(l);
    }
    return 0;
  }

  /// The lanes whose bits are set, in the same turn from the consumer's.
  /// Out of line, as sweep(): callers that do not use the summary inline
  /// only the test that skips it.
  [[gnu::noinline]] std::size_t dequeue_summarized(consumer_token& c, T* out,
                                                   std::size_t max) noexcept {
    const std::size_t start = c.lane < lane_count_ ? c.lane : 0;
    const std::size_t words = summary_.words();
    std::size_t stale = 0;
    const std::uint64_t below = (std::uint64_t{1} << (start & 63)) - 1;  // bits before start
    std::size_t w = start >> 6;
    std::uint64_t bits = summary_.word(w).load(std::memory_order_relaxed) & ~below;
    for (std::size_t visited = 0;;) {
      for (; bits != 0; bits &= bits - 1) {
        const std::size_t l = (w << 6) | static_cast<std::size_t>(std::countr_zero(bits));
        if (const std::size_t n = lanes_[l].dequeue(out, max); n != 0) {
          rotate(c, l, l != start, n);
          return n;
        }
        ++stale;
      }
      if (++visited > words) break;
      w = w + 1 == words ? 0 : w + 1;
      bits = summary_.word(w).load(std::memory_order_relaxed);
      if (visited == words) bits &= below;  // back at the first word: the bits before start
    }
    return maybe_sweep(c, out, max, stale);
  }

  /// After an empty poll that met `stale` set bits of empty lanes: clears
  /// them now and then, so that idle polls stop reading those lanes; not
  /// for a few, whose reads cost less than the sweep's membarrier.
  /// Returns what a poll of every lane takes when the sweep found a
  /// record behind a bit it had cleared (a producer published meanwhile).
  std::size_t maybe_sweep(consumer_token& c, T* out, std::size_t max, std::size_t stale) noexcept {
    if (stale >= detail::lane_summary_bits::sweep_min_stale && (++c.stale_polls & 15) == 0 &&
        sweep())
      return dequeue_scanning(c, out, max);
    return 0;
  }

  /// Clears the bits of the lanes that look empty (detail/lane_summary.h);
  /// true when its second look found one of them holding a record.
  [[gnu::noinline, gnu::cold]] bool sweep() noexcept {
    if (!summary_.begin_sweep()) return false;
    bool found = false;
    std::uint64_t cleared[detail::lane_summary_bits::max_words] = {};
    bool any = false;
    for (std::size_t w = 0; w < summary_.words(); ++w) {
      std::uint64_t empty = 0;
      for (std::uint64_t bits = summary_.word(w).load(std::memory_order_relaxed); bits != 0;
           bits &= bits - 1) {
        const std::size_t l = (w << 6) | static_cast<std::size_t>(std::countr_zero(bits));
        if (lanes_[l].looks_empty()) empty |= bits & (~bits + 1);
      }
      if (empty != 0) {
        // seq_cst: before the heavy fence in the single order every
        // producer's post-barrier load of this word follows.
        summary_.word(w).fetch_and(~empty, std::memory_order_seq_cst);
        cleared[w] = empty;
        any = true;
      }
    }
    if (any) {
      if (detail::heavy_fence()) {
        summary_.count_sweep();
      } else {
        // No membarrier here: put every bit back, and never try again.
        for (std::size_t w = 0; w < summary_.words(); ++w)
          if (cleared[w] != 0) summary_.word(w).fetch_or(cleared[w], std::memory_order_relaxed);
        return false;  // the sweep stays "under way": every poll scans every lane
      }
      for (std::size_t w = 0; w < summary_.words(); ++w)
        for (std::uint64_t bits = cleared[w]; bits != 0; bits &= bits - 1) {
          const std::size_t l = (w << 6) | static_cast<std::size_t>(std::countr_zero(bits));
          if (!lanes_[l].looks_empty()) {
            summary_.mark(l);
            found = true;
          }
        }
    }
    summary_.end_sweep();
    return found;
  }

  std::size_t next(std::size_t l) const noexcept { return l + 1 == lane_count_ ? 0 : l + 1; }
  bool owns_lane(const lane_type* l) const noexcept {
    return l >= lanes_ && l < lanes_ + lane_count_;
  }

  void* allocate(std::size_t bytes) {
    void* p = memory_->allocate(bytes, cache_line_size);
    // libstdc++ declares allocate() __alloc_align__, so the compiler assumes
    // the result is aligned and would delete a plain check; hide the address
    // from the optimiser so a resource that ignores alignment is really caught.
    std::uintptr_t address = reinterpret_cast<std::uintptr_t>(p);
    asm volatile("" : "+r"(address));
    if (address % cache_line_size != 0) {
      memory_->deallocate(p, bytes, cache_line_size);
      throw std::runtime_error(
          "iocm::mpmc_queue: the memory resource ignored cache-line alignment");
    }
    return p;
  }

  void release(std::size_t built) noexcept {
    for (std::size_t i = 0; i < built; ++i) {
      lanes_[i].destroy_slots();
      memory_->deallocate(lanes_[i].slots(), capacity_ * sizeof(slot_type), cache_line_size);
      lanes_[i].~lane_type();
    }
    memory_->deallocate(lanes_, lane_count_ * sizeof(lane_type), cache_line_size);
  }

  // Read-only after construction.
  lane_type* lanes_ = nullptr;
  std::size_t lane_count_ = 0;
  std::size_t capacity_ = 0;
  unsigned burst_;
  std::pmr::memory_resource* memory_ = nullptr;
  bool summary_used_ = false;  // lane_summary::on, and summary_min_lanes lanes or more
  std::atomic<std::size_t> consumers_made_{0};  // touched only by make_consumer()
  struct no_summary {};
  [[no_unique_address]] std::conditional_t<summarized, detail::lane_summary_bits, no_summary>
      summary_;
};

}  // namespace iocm
