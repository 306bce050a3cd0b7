// The engine both public faces share (the COM-shaped manager in
// com_manager.cpp and iocm::engine in cpp_engine.cpp): ports, bindings,
// submission, the completion queue and the notifier threads. No OS headers:
// the pollers and OS services come from platform/ through poller.h and os.h.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "handle_table.h"
#include "idle_notifiers.h"
#include "iocm/cache_line.h"
#include "iocm/completion.h"
#include "iocm/detail/backoff.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"
#include "op_state.h"
#include "placement.h"
#include "poller.h"

namespace iocm::detail {

using hosting::DWORD;
using hosting::HANDLE;
using hosting::HRESULT;
using hosting::OVERLAPPED;

/// The completion queue: one shard per NUMA node with a poller.
using completion_queue = sharded_queue<mpmc_queue<completion>>;

/// Counters any thread may read; relaxed snapshots.
struct engine_counters {
  std::uint32_t pollers;
  std::uint32_t shards;      // queue shards (NUMA nodes with a poller)
  std::uint32_t ring_setup;  // iocm_ring_setup the probe chose
  std::uint32_t backend;     // iocm_backend in use
  std::uint32_t notifiers;   // threads alive
  std::uint32_t busy;        // notifiers inside OnComplete
  std::uint32_t parked;      // notifiers asleep
  std::uint64_t wakeups;     // futex wake-ups of notifiers
};

/// A configuration made whole: defaults and environment applied, the
/// topology loaded and the placement planned.
struct engine_setup {
  iocm_config config{};
  placement_plan plan;
  placement_reach reach;
  std::string notice;  // said once at IOCM_LOG_INFO (why epoll was chosen)
};

class engine_core {
 public:
  /// Validates `in` (null: defaults), applies the environment (IOCM_CPUS,
  /// IOCM_POLLERS, IOCM_PLACEMENT, IOCM_TOPOLOGY) and plans the placement.
  /// E_INVALIDARG with *why naming the value, or E_OUTOFMEMORY.
  static HRESULT prepare(const iocm_config* in, engine_setup& out, std::string& why) noexcept;
  /// prepare(), then create(): reports a refusal (IOCM_LOG_ERROR) and a
  /// placement that cannot be fully applied (one IOCM_LOG_WARNING) through
  /// the config's log callback or stderr. On failure returns null with an
  /// HRESULT in *error and the message in *why.
  static std::unique_ptr<engine_core> build(const iocm_config* in, HRESULT* error,
                                            std::string* why) noexcept;
  /// Builds everything and starts the threads. On failure returns null and
  /// an HRESULT in *error.
  static std::unique_ptr<engine_core> create(const engine_setup& setup, HRESULT* error) noexcept;
  ~engine_core();  // closes every port, joins every thread

  // The hosting contract (docs/ENGINE.md). Thread-safe.
  HRESULT create_port(HANDLE* port) noexcept;
  HRESULT close_port(HANDLE port) noexcept;
  HRESULT set_max_threads(DWORD n) noexcept;
  HRESULT get_max_threads(DWORD* n) noexcept;
  HRESULT get_available_threads(DWORD* n) noexcept;
  HRESULT set_min_threads(DWORD n) noexcept;
  HRESULT get_min_threads(DWORD* n) noexcept;
  HRESULT set_clr(hosting::ICLRIoCompletionManager* clr) noexcept;
  static HRESULT initialize_overlapped(void* pv) noexcept;
  HRESULT bind(HANDLE port, HANDLE handle) noexcept;
  HRESULT unbind(HANDLE handle) noexcept;

  // Operations: IOCM_E_IO_PENDING when accepted.
  HRESULT submit(op_kind kind, HANDLE handle, void* buffer, std::uint32_t length, std::uint64_t aux,
                 OVERLAPPED* ov) noexcept;
  HRESULT post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) noexcept;
  HRESULT cancel(HANDLE handle, OVERLAPPED* ov) noexcept;

  /// A pumped engine (IOCM_PUMPED): delivery on the calling thread
  /// (IIocmPump::Pump). HRESULT_FROM_WIN32(ERROR_INVALID_FUNCTION) on an
  /// engine with threads.
  HRESULT pump(DWORD timeout_ms, DWORD* delivered) noexcept;
  bool pumped() const noexcept { return pumped_; }

  engine_counters counters() const noexcept;
  /// The placement table (describe_plan), with the node each shard's memory
  /// was found on.
  std::string describe() const;

  /// True on a thread that delivers this engine's completions (a pumped
  /// engine's: while it owns the pump).
  bool on_notifier_thread() const noexcept;

  // Called by pollers (platform/).
  /// Reports through the config's log callback, or on stderr. Pollers use
  /// it, once per kind, for an answer of the kernel iocm does not expect.
  void log(std::uint32_t level, const char* text) const noexcept;
  bool port_open(std::uint16_t slot) const noexcept {
    return (ports_[slot].state.load(std::memory_order_acquire) & 3) == port_open_state;
  }
  /// A poller publishes harvested records through its own lane, then wakes a
  /// notifier if one sleeps. Returns how many fit.
  std::size_t queue_publish(completion_queue::producer_token& lane, const completion* records,
                            std::size_t n) noexcept {
    const std::size_t placed = queue_.try_enqueue_bulk(lane, records, n);
    if (placed != 0) idle_.wake_one(lane.shard());
    return placed;
  }

  engine_core(const engine_core&) = delete;
  engine_core& operator=(const engine_core&) = delete;

 private:
  explicit engine_core(const engine_setup& setup);

  static constexpr std::uint64_t port_free_state = 0, port_open_state = 1, port_closing_state = 2;
  static constexpr unsigned max_notifiers = 1024;
  static constexpr std::size_t batch_size = 32;
  static_assert(batch_size < 4096, "a batch's count and next fit 12 bits of claim");

  struct alignas(cache_line_size) pending_counter {
    std::atomic<std::int64_t> value{0};
  };
  struct port_entry {
    // generation << 2 | free/open/closing. Changed under bind_mutex_ only.
    std::atomic<std::uint64_t> state{port_free_state};
  };
  struct notifier_slot {
    park_word park;
    alignas(cache_line_size) std::atomic<bool> busy{false};  // inside OnComplete
    std::atomic<bool> running{false};  // thread alive (between start and exit)
    // The CPU the thread found itself pinned to; -1: not pinned; -2: not
    // started yet.
    std::atomic<int> cpu{-2};
    std::thread thread;
    completion_queue::consumer_token token;  // made by the spawning thread
    // The batch this notifier is delivering, shared so that an idle notifier
    // can take over the records a blocked OnComplete would otherwise hold
    // hostage. claim = generation << 24 | count << 12 | next; a record is
    // delivered by whoever moves `next` past it.
    alignas(cache_line_size) std::atomic<std::uint64_t> claim{0};
    std::atomic<std::uint64_t> words[2 * batch_size];  // the records, as two words each
  };
  /// What a notifier is delivering now; lets Close from inside OnComplete
  /// finish this thread's batch (docs/ENGINE.md, "Close").
  struct delivery_context {
    notifier_slot* slot = nullptr;
    completion* records = nullptr;
    completion_queue::consumer_token* token = nullptr;
  };
  /// The record this thread is inside OnComplete for. Threads may deliver
  /// for several engines, nested (a callback of one engine that closes a
  /// port of another): a record is its engine's, whose Close alone may
  /// settle it.
  struct current_record {
    const engine_core* engine = nullptr;
    int port_slot = -1;
    std::uint16_t counter = 0;
    bool settled = false;  // Close already took it off the pending count
  };

  pending_counter& pending(std::uint16_t slot, std::uint16_t counter) noexcept {
    return pending_[slot * counters_per_port_ + counter];
  }
  std::int64_t pending_total(std::uint16_t slot) const noexcept;
  /// The refusals every operation shares: null, misaligned, no runtime yet.
  HRESULT check_overlapped(OVERLAPPED* ov) const noexcept;
  /// Counts the operation on its port (refused with port_gone unless the
  /// port is still in open_state) and moves ov from idle to in flight.
  HRESULT admit(std::uint16_t slot, std::uint16_t counter, std::uint64_t open_state,
                HRESULT port_gone, OVERLAPPED* ov) noexcept;
  /// Undoes admit() when the operation could not be queued.
  HRESULT withdraw(std::uint16_t slot, std::uint16_t counter, OVERLAPPED* ov) noexcept;
  bool decode_port(HANDLE port, std::uint16_t& slot, std::uint64_t& state) const noexcept;
  HANDLE open_port_locked() noexcept;  // bind_mutex_ held
  /// Clears the O_NONBLOCK Bind set on fd, or hands that duty to a binding
  /// of fd made since (bind_mutex_ held).
  void restore_blocking_locked(int fd) noexcept;
  /// On a notifier thread inside OnComplete: delivers one record (or the
  /// rest of its batch), nested; false when there was nothing to deliver.
  bool help_deliver() noexcept;
  /// Waits until done(), delivering meanwhile when called from inside
  /// OnComplete (Close and Unbind may wait for records only we can deliver).
  template <class Done>
  void wait_delivering(Done done) noexcept {
    backoff wait;
    for (unsigned rounds = 0; !done(); ++rounds) {
      if (help_deliver()) continue;
      if (rounds < 1000)
        wait.pause();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  HRESULT spawn_notifiers_locked(unsigned upto) noexcept;  // threads_mutex_ held
  /// A full inbox: waits a moment, or, in a pumped engine that no other
  /// thread is pumping, moves the inbox on itself. Never called with the
  /// bind lock held: a pump that empties the inbox may want it.
  void wait_for_inbox() noexcept;
  /// Puts `item` in p's inbox, waiting for room up to full_inbox_retries
  /// times; false when it stayed full. The first try is inline: it is every
  /// submission's path.
  bool queue_request(poller& p, inbox_item item) noexcept {
    return p.submit(item) || queue_request_waiting(p, item);
  }
  bool queue_request_waiting(poller& p, inbox_item item) noexcept;

  // A pumped engine's pump: one owner at a time (pump_owned_), which is the
  // thread on which on_notifier_thread() is true.
  bool acquire_pump() noexcept;
  void release_pump() noexcept;
  /// Another thread owns the pump now (it will deliver what is queued).
  bool pumping_elsewhere() const noexcept {
    return pump_owned_.load(std::memory_order_acquire) && !on_notifier_thread();
  }
  /// help_deliver() of a pumped engine: the rest of the pump's batch, else
  /// a poller pass and one record.
  bool pump_help() noexcept;
  /// The pump's owner delivers, counting it for this Pump call.
  void pump_deliver(const completion& record) noexcept {
    deliver(record);
    ++pump_delivered_;
  }
  void notifier_main(unsigned index);
  void deliver(const completion& record) noexcept;
  void deliver_rest_of_batch() noexcept;
  bool steal_one(const notifier_slot& self) noexcept;
  bool stealable() const noexcept;
  bool has_records() const noexcept { return !queue_.empty_approx(); }

  iocm_config config_;
  placement_plan plan_;
  placement_reach reach_;
  unsigned counters_per_port_;  // pollers + 1: one pending counter per poller, and one for posts

  // Each shard's memory, bound to its node where that can be done; declared
  // before the queue, which allocates from it.
  struct shard_memory;
  std::vector<std::unique_ptr<shard_memory>> shard_memory_;
  completion_queue queue_;
  std::vector<std::unique_ptr<poller>> pollers_;
  std::atomic<std::uint32_t> next_poller_{0};  // Bind spreads handles round-robin

  std::unique_ptr<port_entry[]> ports_;
  std::unique_ptr<pending_counter[]> pending_;
  handle_table handles_;
  std::mutex bind_mutex_;  // ports' state changes, Bind/Unbind, the default port
  HANDLE default_port_ = nullptr;

  std::atomic<hosting::ICLRIoCompletionManager*> clr_{nullptr};

  std::mutex threads_mutex_;  // thread limits and spawning
  std::atomic<std::uint32_t> min_threads_, max_threads_;
  std::unique_ptr<notifier_slot[]> notifiers_;
  std::atomic<std::uint32_t> spawned_{0};   // slots ever started; grows under threads_mutex_
  std::atomic<std::uint32_t> spinning_{0};  // notifiers idle but not yet parked
  idle_notifiers idle_;
  std::atomic<bool> stopping_{false};

  const bool pumped_;
  std::atomic<bool> pump_owned_{false};
  engine_core* pump_outer_ = nullptr;  // the owner's tl_engine_ before it took the pump
  // The batch the pump is delivering, shared with a nested Close's help.
  // Touched by the pump's owner only.
  completion pump_records_[batch_size];
  std::size_t pump_count_ = 0, pump_next_ = 0;
  std::size_t pump_delivered_ = 0;  // in this Pump call
  completion_queue::consumer_token pump_token_;

  static thread_local engine_core* tl_engine_;
  static thread_local delivery_context* tl_delivery_;
  static thread_local current_record tl_current_;
};

/// Runs destroy() now; or, when called on one of core's notifier threads
/// (the last reference dropped inside OnComplete), on a new thread, because a
/// notifier cannot join itself. If no thread can be started the engine is
/// leaked rather than deadlocked.
template <class F>
void destroy_off_notifier(const engine_core& core, F destroy) noexcept {
  if (core.on_notifier_thread()) {
    try {
      std::thread(std::move(destroy)).detach();
    } catch (...) {
    }
    return;
  }
  destroy();
}

}  // namespace iocm::detail
