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
      : slots_(slots), mask_(capacity - 1), capacity_(capacity) {
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
    for (std::uint64_t i = 0; i < capacity_; ++i) slots_[i].seq.~Atom<std::uint64_t>();
  }

  /// Single producer: only the owner of the lane calls this. Wait-free.
  std::size_t enqueue_owned(const T* items, std::size_t n) noexcept {
    const std::uint64_t pos = tail_.load(std::memory_order_relaxed);  // our own store
    std::size_t k = 0;
    for (; k < n; ++k) {
      slot_type& s = at(pos + k);
      // (1) acquire pairs with (4): the consumer that freed the slot has
      // finished reading the old value before we overwrite it.
      if (s.seq.load(std::memory_order_acquire) != pos + k) break;  // full
      std::memcpy(s.value, &items[k], sizeof(T));
      s.seq.store(pos + k + 1, std::memory_order_release);  // (2) pairs with (3)
    }
    // Relaxed: tail only feeds size_approx() and the next owner (who gets it
    // through the token hand-off's acquire).
    if (k != 0) tail_.store(pos + k, std::memory_order_relaxed);
    return k;
  }

  /// Any number of producers. Lock-free: claims a run of free slots with one
  /// CAS on tail, then fills them.
  std::size_t enqueue_shared(const T* items, std::size_t n) noexcept {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    std::size_t k;
    for (;;) {
      k = 0;
      // (1') acquire pairs with (4), as in enqueue_owned.
      while (k < n && at(pos + k).seq.load(std::memory_order_acquire) == pos + k) ++k;
      if (k == 0) {
        const std::uint64_t seq = at(pos).seq.load(std::memory_order_acquire);
        if (position_diff(seq, pos) < 0) return 0;  // still holds last lap's value: full
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
    for (std::size_t i = 0; i < k; ++i) {
      slot_type& s = at(pos + i);
      std::memcpy(s.value, &items[i], sizeof(T));
      s.seq.store(pos + i + 1, std::memory_order_release);  // (2') pairs with (3)
    }
    return k;
  }

  /// Any number of consumers. Lock-free: claims a run of published slots with
  /// one CAS on head, then reads them and frees them.
  std::size_t dequeue(T* out, std::size_t max) noexcept {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    std::size_t k;
    for (;;) {
      k = 0;
      // (3) acquire pairs with (2)/(2'): the value is visible once its
      // sequence says published.
      while (k < max && at(pos + k).seq.load(std::memory_order_acquire) == pos + k + 1) ++k;
      if (k == 0) {
        const std::uint64_t seq = at(pos).seq.load(std::memory_order_acquire);
        if (position_diff(seq, pos + 1) < 0) return 0;  // not yet published: empty
        pos = head_.load(std::memory_order_relaxed);      // another consumer took it
        continue;
      }
      // Relaxed: as on the producer side, the CAS allocates; success means no
      // consumer took pos..pos+k since we checked them. Not FIFO among consumers.
      if (head_.compare_exchange_weak(pos, pos + k, std::memory_order_relaxed,
                                      std::memory_order_relaxed))
        break;
    }
    for (std::size_t i = 0; i < k; ++i) {
      slot_type& s = at(pos + i);
      std::memcpy(&out[i], s.value, sizeof(T));
      s.seq.store(pos + i + capacity_, std::memory_order_release);  // (4) pairs with (1)/(1')
    }
    return k;
  }

  /// True when a consumer would find nothing at head right now.
  bool looks_empty() const noexcept {
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    return position_diff(at(pos).seq.load(std::memory_order_acquire), pos + 1) < 0;
  }

  /// Published-or-in-flight positions; exact when the lane is quiescent.
  std::uint64_t size_approx() const noexcept {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    const std::int64_t d = position_diff(t, h);
    return d <= 0 ? 0 : (static_cast<std::uint64_t>(d) > capacity_ ? capacity_ : d);
  }

  std::uint64_t capacity() const noexcept { return capacity_; }
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
  slot_type& at(std::uint64_t pos) const noexcept { return slots_[pos & mask_]; }

  // Read-only after construction, read by everyone: its own line, so that
  // writes to head or tail never invalidate it.
  alignas(cache_line_size) slot_type* slots_;
  std::uint64_t mask_;
  std::uint64_t capacity_;
  Atom<bool> owned_{false};  // written only when a producer token changes hands
  // Written by producers (only by the owner on a single-producer lane).
  alignas(cache_line_size) Atom<std::uint64_t> tail_;
  // Written by consumers. The class's alignment rounds its size up to a whole
  // line, so the next lane's read-only line never shares head_'s.
  alignas(cache_line_size) Atom<std::uint64_t> head_;
};

}  // namespace iocm::detail
