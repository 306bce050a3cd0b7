// iocm/detail/lane.h — one bounded ring of an iocm::mpmc_queue.
//
// A lane is a power-of-two array of slots, each carrying a sequence number
// beside its value (D. Vyukov's bounded MPMC scheme). The sequence tells a
// slot's state for a position p (positions are 64-bit and only grow):
//   seq == p            free: a producer may write position p here;
//   seq == p + 1        published: a consumer may take position p;
//   seq == p + capacity taken: free again, for position p + capacity.
// Consumers claim positions with a CAS on `head`; producers either own the
// lane alone (single_producer: `tail` is theirs, no RMW at all) or claim with
// a CAS on `tail` (the shared lane). A producer and a consumer meet only in the
// slot they hand over, so in the steady state one cache line moves per
// hand-off (a line holds two 16-byte records with their sequences).
//
// Memory ordering: every hand-off of a value goes through its slot's
// sequence: the writer stores the value, then the sequence with release; the
// reader loads the sequence with acquire, then touches the value. head and
// tail only allocate positions and are relaxed.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "iocm/cache_line.h"

namespace iocm::detail {

/// Distance from b to a on the 64-bit position circle; correct across the
/// wrap at 2^64 as long as the two are less than 2^63 apart.
constexpr std::int64_t position_diff(std::uint64_t a, std::uint64_t b) noexcept {
  return static_cast<std::int64_t>(a - b);
}

/// Slot alignment: the next power of two of (sequence + value), capped at a
/// line, so that slots never straddle a cache line when they fit in one.
template <class T>
constexpr std::size_t slot_alignment() noexcept {
  constexpr std::size_t raw = sizeof(std::uint64_t) + sizeof(T);
  return raw >= cache_line_size ? cache_line_size : std::bit_ceil(raw);
}

template <class T, template <class> class Atom>
struct alignas(slot_alignment<T>()) slot {
  Atom<std::uint64_t> seq;
  // Raw bytes, not a T: the queue never constructs or destroys elements; it
  // moves their bytes (T is trivially copyable).
  alignas(T) unsigned char value[sizeof(T)];
};

template <class T, template <class> class Atom>
class lane {
 public:
  using slot_type = slot<T, Atom>;

  lane(slot_type* slots, std::uint64_t capacity, std::uint64_t first_position) noexcept
      : slots_(slots), mask_(capacity - 1) {
    tail_.store(first_position, std::memory_order_relaxed);
    head_.store(first_position, std::memory_order_relaxed);
    for (std::uint64_t i = 0; i < capacity; ++i) {
      const std::uint64_t p = first_position + i;
      new (&slots_[p & mask_].seq) Atom<std::uint64_t>(p);
    }
  }
  lane(const lane&) = delete;
  lane& operator=(const lane&) = delete;

  void destroy_slots() noexcept {
    for (std::uint64_t i = 0; i <= mask_; ++i) slots_[i].seq.~Atom<std::uint64_t>();
  }

  /// Single producer, one record: only the owner of the lane calls this.
  /// Wait-free.
  bool enqueue_one_owned(const T& item) noexcept {
    const ring r = view();
    const std::uint64_t pos = tail_.load(std::memory_order_relaxed);  // our own store
    if (refilling_) [[unlikely]]
      if (!refilled(pos)) return false;
    slot_type& s = r.at(pos);
    // (L1) acquire pairs with (L4): the consumer that freed the slot has
    // finished reading the old value before we overwrite it.
    if (s.seq.load(std::memory_order_acquire) != pos) {
      found_full();
      return false;
    }
    std::memcpy(s.value, &item, sizeof(T));
    s.seq.store(pos + 1, std::memory_order_release);  // (L2) pairs with (L3)
    // Relaxed: tail only feeds size_approx() and the next owner, who gets it
    // through the token hand-off's acquire.
    tail_.store(pos + 1, std::memory_order_relaxed);
    return true;
  }

  /// Single producer, a batch: only the owner of the lane calls this.
  /// Wait-free.
  std::size_t enqueue_owned(const T* items, std::size_t n) noexcept {
    const ring r = view();
    const std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    if (refilling_) [[unlikely]]
      if (!refilled(pos)) return 0;
    std::size_t k = 0;
    // (L1) as in enqueue_one_owned. Reading every sequence first lets the
    // misses overlap instead of waiting for each in turn.
    while (k < n && r.at(pos + k).seq.load(std::memory_order_acquire) == pos + k) ++k;
    if (k == 0) {
      if (n != 0) found_full();  // a batch of none is not a refusal
      return 0;
    }
    fill_and_publish(pos, items, k);
    tail_.store(pos + k, std::memory_order_relaxed);
    return k;
  }

  /// Any number of producers. Lock-free: claims a run of free slots with one
  /// CAS on tail, then fills them.
  std::size_t enqueue_shared(const T* items, std::size_t n) noexcept {
    const ring r = view();
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    std::size_t k;
    for (;;) {
      k = 0;
      // (L1') acquire pairs with (L4), as in enqueue_one_owned.
      while (k < n && r.at(pos + k).seq.load(std::memory_order_acquire) == pos + k) ++k;
      if (k == 0) {
        const std::uint64_t seq = r.at(pos).seq.load(std::memory_order_acquire);
        if (position_diff(seq, pos) < 0) return 0;    // still holds last lap's value: full
        pos = tail_.load(std::memory_order_relaxed);  // another producer moved on
        continue;
      }
      // Relaxed: the CAS only allocates positions; slots are handed over by
      // their sequences. Success means nobody claimed pos..pos+k since we
      // looked, so they are still free. This loop is not FIFO among producers.
      if (tail_.compare_exchange_weak(pos, pos + k, std::memory_order_relaxed,
                                      std::memory_order_relaxed))
        break;
    }
    fill_and_publish(pos, items, k);
    return k;
  }

  /// What dequeue_one_once found.
  enum class take { taken, empty, contended };
  /// Any number of consumers, one record, one try: `contended` when another
  /// consumer took the position first, so that the caller can look at
  /// another lane instead of fighting for this one's head. Wait-free.
  take dequeue_one_once(T& out) noexcept {
    const ring r = view();
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    slot_type& s = r.at(pos);
    // (L3) acquire pairs with (L2): the value is visible once published.
    const std::int64_t d = position_diff(s.seq.load(std::memory_order_acquire), pos + 1);
    if (d < 0) return take::empty;  // not yet published
    // Relaxed: allocates the position only (see dequeue). Not FIFO among consumers.
    if (d > 0 || !head_.compare_exchange_strong(pos, pos + 1, std::memory_order_relaxed,
                                                std::memory_order_relaxed))
      return take::contended;
    std::memcpy(&out, s.value, sizeof(T));
    s.seq.store(pos + r.mask + 1, std::memory_order_release);  // (L4) pairs with (L1)
    return take::taken;
  }

  /// Any number of consumers. Lock-free: claims a run of published slots with
  /// one CAS on head, then reads them and frees them.
  std::size_t dequeue(T* out, std::size_t max) noexcept {
    const ring r = view();
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    std::size_t k;
    for (;;) {
      k = 0;
      // (L3) acquire pairs with (L2)/(L2'): the value is visible once its
      // sequence says published.
      while (k < max && r.at(pos + k).seq.load(std::memory_order_acquire) == pos + k + 1) ++k;
      if (k == 0) {
        const std::uint64_t seq = r.at(pos).seq.load(std::memory_order_acquire);
        if (position_diff(seq, pos + 1) < 0) return 0;  // not yet published: empty
        pos = head_.load(std::memory_order_relaxed);    // another consumer took it
        continue;
      }
      // Relaxed: as on the producer side, the CAS allocates; success means no
      // consumer took pos..pos+k since we checked them. Not FIFO among consumers.
      if (head_.compare_exchange_weak(pos, pos + k, std::memory_order_relaxed,
                                      std::memory_order_relaxed))
        break;
    }
    for (std::size_t i = 0; i < k; ++i) std::memcpy(&out[i], r.at(pos + i).value, sizeof(T));
    // (L4) release pairs with (L1)/(L1'). Last to first: the producer, which
    // checks from its tail forward, sees the run free all at once instead of
    // chasing us slot by slot.
    for (std::size_t i = k; i-- > 0;)
      r.at(pos + i).seq.store(pos + i + r.mask + 1, std::memory_order_release);
    return k;
  }

  /// True when a consumer would find nothing at head right now.
  bool looks_empty() const noexcept {
    const ring r = view();
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    return position_diff(r.at(pos).seq.load(std::memory_order_acquire), pos + 1) < 0;
  }

  /// Published-or-in-flight positions; exact when the lane is quiescent.
  std::uint64_t size_approx() const noexcept {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    const std::int64_t d = position_diff(t, h);
    const std::uint64_t n = static_cast<std::uint64_t>(d);
    return d <= 0 ? 0 : (n > capacity() ? capacity() : n);
  }

  std::uint64_t capacity() const noexcept { return mask_ + 1; }
  slot_type* slots() const noexcept { return slots_; }

  /// Producer-token ownership of a single-producer lane.
  bool try_own() noexcept {
    bool expected = false;
    // acquire pairs with release_ownership(): the previous owner's tail store
    // and slot writes are visible to the new owner.
    return owned_.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void release_ownership() noexcept { owned_.store(false, std::memory_order_release); }

 private:
  /// The read-only geometry, copied into registers: GCC treats every atomic
  /// operation as a compiler barrier and would reload slots_ and mask_ from
  /// memory after each one.
  struct ring {
    slot_type* slots;
    std::uint64_t mask;
    slot_type& at(std::uint64_t pos) const noexcept { return slots[pos & mask]; }
  };
  ring view() const noexcept { return ring{slots_, mask_}; }

  /// A single-producer lane found full stays closed to its producer until
  /// the consumers have freed more than a quarter of it. Without the gap the
  /// producer refills each slot the moment a consumer frees it, and the two
  /// write the same cache line turn about for every record (docs/QUEUE.md,
  /// "A full lane refills before its producer writes again").
  std::uint64_t refill_gap() const noexcept { return (mask_ + 1) / 4; }

  /// Out of line: the refusal path, not inlined into every enqueue.
  [[gnu::noinline, gnu::cold]] void found_full() noexcept { refilling_ = refill_gap() != 0; }
  /// Whether the slot refill_gap() ahead of the tail is free, so that the
  /// producer may write again. (Relaxed: only a hint; the slot at the tail
  /// is still checked with acquire before it is written.)
  [[gnu::noinline]] bool refilled(std::uint64_t pos) noexcept {
    const std::uint64_t ahead = pos + refill_gap();
    if (view().at(ahead).seq.load(std::memory_order_relaxed) != ahead) return false;
    refilling_ = false;
    return true;
  }

  /// Writes k claimed slots, then publishes them last to first: a consumer
  /// reading from head finds the first slot published only when the whole
  /// run is, and takes it in one batch instead of racing us slot by slot.
  void fill_and_publish(std::uint64_t pos, const T* items, std::size_t k) noexcept {
    const ring r = view();
    for (std::size_t i = 0; i < k; ++i) std::memcpy(r.at(pos + i).value, &items[i], sizeof(T));
    for (std::size_t i = k; i-- > 0;)
      r.at(pos + i).seq.store(pos + i + 1, std::memory_order_release);  // (L2) pairs with (L3)
  }

  // Read-only after construction, read by everyone: its own line, so that
  // writes to head or tail never invalidate it.
  alignas(cache_line_size) slot_type* slots_;
  std::uint64_t mask_;
  Atom<bool> owned_{false};  // written only when a producer token changes hands
  // Written by producers (only by the owner on a single-producer lane).
  alignas(cache_line_size) Atom<std::uint64_t> tail_;
  // The owner's alone (handed on with the token, like tail_): found full,
  // waiting for the consumers to free refill_gap() slots.
  bool refilling_ = false;
  // Written by consumers. The class's alignment rounds its size up to a whole
  // line, so the next lane's read-only line never shares head_'s.
  alignas(cache_line_size) Atom<std::uint64_t> head_;
};

}  // namespace iocm::detail
