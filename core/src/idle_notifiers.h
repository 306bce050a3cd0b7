// Where idle notifier threads sleep: a LIFO stack per home (NUMA shard), so
// the most recently active (cache-warm) thread wakes first, as on an IOCP,
// and work published into a shard wakes a notifier of that shard's node when
// one sleeps, any other sleeper otherwise (a shard is never left waiting
// because its own notifiers are all busy).
//
// Producers call wake_one() after every enqueue; it costs one fence and one
// load unless a notifier is actually asleep. Only then does it take the
// stack's mutex (held for a few instructions) and make the futex syscall,
// which costs microseconds anyway.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "iocm/cache_line.h"
#include "iocm/detail/fence.h"
#include "os.h"

namespace iocm::detail {

/// One sleeper's word. run: awake; parked: asleep or about to be.
struct alignas(cache_line_size) park_word {
  static constexpr std::uint32_t run = 0;
  static constexpr std::uint32_t parked = 1;
  std::atomic<std::uint32_t> state{run};
};
static_assert(sizeof(std::atomic<std::uint32_t>) == 4, "a futex word is 32 bits");

class idle_notifiers {
 public:
  /// Room for `capacity` sleepers in each of `homes` stacks.
  idle_notifiers(std::size_t capacity, std::size_t homes) : stacks_(homes) {
    for (auto& s : stacks_) s.reserve(capacity);
  }

  /// Sleeps on stack `home` until woken, unless has_work() turns true after
  /// we are visible on the stack (the re-check closes the lost-wake-up
  /// window).
  template <class HasWork>
  void park(park_word& me, std::size_t home, HasWork&& has_work) {
    auto& stack = stacks_[home];
    {
      std::lock_guard lock(mutex_);
      me.state.store(park_word::parked, std::memory_order_relaxed);
      stack.push_back(&me);
      // seq_cst RMW: (I1) pairs with (I2); either the producer sees parked_ > 0
      // or we see its record in the re-check below.
      parked_.fetch_add(1, std::memory_order_seq_cst);
    }
    if (has_work()) {
      std::lock_guard lock(mutex_);
      if (me.state.load(std::memory_order_relaxed) == park_word::parked) {
        // Still on the stack: take ourselves off.
        for (auto it = stack.begin(); it != stack.end(); ++it)
          if (*it == &me) {
            stack.erase(it);
            break;
          }
        parked_.fetch_sub(1, std::memory_order_relaxed);
        me.state.store(park_word::run, std::memory_order_relaxed);
      }
      return;
    }
    // Acquire pairs with the release store in pop_and_wake.
    while (me.state.load(std::memory_order_acquire) == park_word::parked)
      os::futex_wait(me.state, park_word::parked);
  }

  /// Wakes the most recently parked notifier of `home`, else of another
  /// home, if any sleeps. Call after publishing work. False when none
  /// slept (the wake-up was not needed). Thread-safe.
  bool wake_one(std::size_t home) noexcept {
    // (I2) pairs with (I1): the record store before this load.
    store_load_fence(parked_);
    if (parked_.load(std::memory_order_relaxed) == 0) return false;
    return pop_and_wake(home);
  }

  /// Wakes every parked notifier (shutdown, retiring threads).
  void wake_all() noexcept {
    store_load_fence(parked_);
    while (parked_.load(std::memory_order_relaxed) != 0)
      if (!pop_and_wake(0)) break;
  }

  std::uint32_t parked() const noexcept { return parked_.load(std::memory_order_relaxed); }
  std::uint64_t wakeups() const noexcept { return wakeups_.load(std::memory_order_relaxed); }

 private:
  bool pop_and_wake(std::size_t home) noexcept {
    park_word* w = nullptr;
    {
      std::lock_guard lock(mutex_);
      std::vector<park_word*>* stack = nullptr;
      for (std::size_t i = 0; i < stacks_.size() && stack == nullptr; ++i) {
        auto& s = stacks_[(home + i) % stacks_.size()];
        if (!s.empty()) stack = &s;
      }
      if (stack == nullptr) return false;
      w = stack->back();
      stack->pop_back();
      parked_.fetch_sub(1, std::memory_order_relaxed);
      w->state.store(park_word::run, std::memory_order_release);
    }
    // Outside the lock: words live as long as the engine, so a notifier that
    // already left park() only gets a harmless spurious wake.
    os::futex_wake_one(w->state);
    wakeups_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  std::mutex mutex_;
  std::vector<std::vector<park_word*>> stacks_;  // reserved up front: push_back never allocates
  alignas(cache_line_size) std::atomic<std::uint32_t> parked_{0};
  std::atomic<std::uint64_t> wakeups_{0};
};

}  // namespace iocm::detail
