// The notifier pool: the threads that take completion records from the
// queue and deliver them (OnComplete), within the host's thread limits.
//
// A notifier takes a batch, publishes it in its slot, and delivers it record
// by record; a record is delivered by whoever moves the slot's `next` past
// it, so when one OnComplete blocks, idle notifiers take over the rest of
// the batch (docs/ENGINE.md, "Notifiers"). Idle notifiers spin a little,
// then sleep on their home shard's stack (idle_notifiers.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "completion_queue.h"
#include "delivery.h"
#include "idle_notifiers.h"
#include "iocm/cache_line.h"
#include "iocm/hosting.h"
#include "placement.h"
#include "port_table.h"

namespace iocm::detail {

class notifier_pool {
 public:
  static constexpr unsigned max_notifiers = 1024;  // the most max_threads may be

  /// `threads`: false for a pumped engine, whose limits govern no thread.
  notifier_pool(completion_queue& queue, port_table& ports, const placement_plan& plan,
                const placement_reach& reach, delivery& deliver, std::uint32_t min_threads,
                std::uint32_t max_threads, std::uint32_t spin, bool threads);
  notifier_pool(const notifier_pool&) = delete;
  notifier_pool& operator=(const notifier_pool&) = delete;

  /// Starts max_threads notifiers. E_OUTOFMEMORY when a thread or its
  /// state cannot be had.
  hosting::HRESULT start() noexcept;
  /// Makes every notifier leave once the queue looks empty, and joins them.
  /// After every port is closed and every poller stopped. Not from a
  /// notifier.
  void stop() noexcept;

  // The hosting contract's thread limits. Thread-safe.
  hosting::HRESULT set_max_threads(hosting::DWORD n) noexcept;
  hosting::HRESULT get_max_threads(hosting::DWORD* n) noexcept;
  hosting::HRESULT set_min_threads(hosting::DWORD n) noexcept;
  hosting::HRESULT get_min_threads(hosting::DWORD* n) noexcept;
  /// max − busy, where busy counts the notifiers inside OnComplete and
  /// `others` (pollers delivering inline); never negative.
  hosting::HRESULT get_available_threads(hosting::DWORD* n, std::uint32_t others = 0) noexcept;
  std::uint32_t max_threads() const noexcept {
    return max_threads_.load(std::memory_order_acquire);
  }

  /// Where producers wake notifiers (after publishing records).
  idle_notifiers& idle() noexcept { return idle_; }

  /// On one of this pool's notifiers, inside OnComplete: delivers the rest
  /// of its batch, or one stolen or queued record, nested; false when there
  /// was nothing to deliver or the thread is not one of ours.
  bool help_deliver() noexcept;

  // Snapshots (relaxed).
  std::uint32_t alive() const noexcept;
  std::uint32_t busy() const noexcept;  // inside OnComplete
  std::uint32_t parked() const noexcept { return idle_.parked(); }
  std::uint64_t wakeups() const noexcept { return idle_.wakeups(); }
  /// One line per running notifier: the CPU it found itself pinned to.
  std::string describe() const;

 private:
  static constexpr std::size_t batch_size = 32;
  static_assert(batch_size < 4096, "a batch's count and next fit 12 bits of claim");

  struct notifier_slot {
    park_word park;
    alignas(cache_line_size) std::atomic<bool> busy{false};  // inside OnComplete
    std::atomic<bool> running{false};  // thread alive (between start and exit)
    // The CPU the thread found itself pinned to; -1: not pinned; -2: not
    // started yet.
    std::atomic<int> cpu{-2};
    std::thread thread;
    completion_queue::consumer_token token;          // made by the spawning thread
    port_table::delivered_row* delivered = nullptr;  // its counts (port_table.h)
    // The batch this notifier is delivering, shared so that an idle notifier
    // can take over the records a blocked OnComplete would otherwise hold
    // hostage. claim = generation << 24 | count << 12 | next; a record is
    // delivered by whoever moves `next` past it.
    alignas(cache_line_size) std::atomic<std::uint64_t> claim{0};
    std::atomic<std::uint64_t> words[2 * batch_size];  // the records, as two words each
  };
  /// What a notifier is delivering now; lets Close from inside OnComplete
  /// finish this thread's batch (docs/ENGINE.md, "Close").
  struct batch_context {
    notifier_slot* slot = nullptr;
    completion* records = nullptr;
    completion_queue::consumer_token* token = nullptr;
  };

  hosting::HRESULT spawn_locked(unsigned upto) noexcept;  // threads_mutex_ held
  void notifier_main(unsigned index);
  void deliver_rest_of_batch() noexcept;
  bool steal_one(const notifier_slot& self) noexcept;
  bool stealable() const noexcept;
  bool has_records() const noexcept { return !queue_.empty_approx(); }

  completion_queue& queue_;
  port_table& ports_;
  const placement_plan& plan_;
  const placement_reach& reach_;
  delivery& delivery_;
  const std::uint32_t spin_;  // idle rounds before a notifier parks
  const bool threads_;

  std::mutex threads_mutex_;  // thread limits and spawning
  std::atomic<std::uint32_t> min_threads_, max_threads_;
  std::unique_ptr<notifier_slot[]> slots_;
  std::atomic<std::uint32_t> spawned_{0};   // slots ever started; grows under threads_mutex_
  std::atomic<std::uint32_t> spinning_{0};  // notifiers idle but not yet parked
  idle_notifiers idle_;
  std::atomic<bool> stopping_{false};

  static inline thread_local batch_context* tl_batch_ = nullptr;
};

}  // namespace iocm::detail
