// The poller interface the engine core declares and platform/ implements:
// one pinned thread per CPU that takes submissions from its inbox to the
// kernel and harvests the kernel's completions into the completion queue.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "handle_table.h"
#include "iocm/cache_line.h"
#include "iocm/completion.h"
#include "iocm/detail/fence.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"
#include "os.h"

namespace iocm::detail {

class engine_core;

/// One request in a poller's inbox. An OVERLAPPED* (8-aligned) submits its
/// operation; the low bits tag the other requests.
using inbox_item = std::uintptr_t;
inline constexpr inbox_item inbox_tag_mask = 7;
// (poller_request* | 1): Cancel of one operation, found by its OVERLAPPED's
// address only (the poller never reads through it); answered.
inline constexpr inbox_item inbox_cancel_one = 1;
// (fd << 3 | 2): cancel everything on fd; nobody waits for it (Close).
inline constexpr inbox_item inbox_cancel_fd = 2;
// (poller_request* | 3): Unbind's cancel of everything on request->fd;
// answered once the kernel has it (docs/ENGINE.md, "Handles").
inline constexpr inbox_item inbox_unbind = 3;
// (poller_request* | 4): Cancel of everything on request->fd; answered with
// how many operations it found.
inline constexpr inbox_item inbox_cancel_all = 4;
inline inbox_item cancel_fd_item(int fd) noexcept {
  return (static_cast<inbox_item>(static_cast<std::uint32_t>(fd)) << 3) | inbox_cancel_fd;
}

/// A request a thread waits on, on its own stack, until the poller answers
/// (Cancel, Unbind): the poller's answer() is its last touch of it.
struct alignas(8) poller_request {
  int fd = -1;
  /// Cancel of one: the OVERLAPPED's address, a key compared with the
  /// addresses of the operations the poller holds, never dereferenced.
  const void* key = nullptr;
  std::uint32_t found = 0;  // the answer: operations found (Cancel)
  std::atomic<std::uint32_t> done{0};
  poller_request* next = nullptr;  // the poller's own list while it holds the request

  /// On the poller: the answer is `n` operations found.
  void answer(std::uint32_t n) noexcept {
    found = n;
    done.store(1, std::memory_order_release);  // pairs with answered()'s acquire
    os::futex_wake_one(done);
  }
  /// On the waiting thread.
  bool answered() const noexcept { return done.load(std::memory_order_acquire) != 0; }
};

/// What a backend needs to build a poller.
struct poller_setup {
  engine_core* core = nullptr;
  unsigned index = 0;
  int cpu = -1;  // -1: do not pin
  std::uint32_t ring_entries = 256;
  std::uint32_t ring_setup = 0;                // iocm_ring_setup
  std::uint32_t backend = IOCM_BACKEND_URING;  // which poller make_poller builds
  std::size_t inbox_capacity = 4096;
  std::pmr::memory_resource* inbox_memory = nullptr;  // the poller's node; null: default
  sharded_queue<mpmc_queue<completion>>::producer_token completions;  // own lane, own node's shard
};

class poller {
 public:
  explicit poller(std::size_t inbox_capacity, std::pmr::memory_resource* memory = nullptr)
      : inbox_(queue_options{inbox_capacity, 0, 64, memory, 0}) {}
  virtual ~poller() = default;
  poller(const poller&) = delete;
  poller& operator=(const poller&) = delete;

  /// Starts the thread and waits until it has set up its kernel side;
  /// returns S_OK or why it could not. Called once.
  virtual hosting::HRESULT start() = 0;
  /// Asks the thread to finish (after the inbox is drained and nothing is
  /// in flight) and joins it. Called once, after every port is closed. A
  /// poller started inline finishes on the calling thread.
  virtual void stop_and_join() noexcept = 0;

  // --- A pumped engine's poller (IOCM_PUMPED): no thread of its own; the
  // --- engine calls these on the thread that owns its pump, one at a time.
  /// Instead of start(): sets up the kernel side on the calling thread.
  virtual hosting::HRESULT start_inline() noexcept = 0;
  /// One pass that never sleeps: the inbox to the kernel, the kernel's
  /// completions into the queue. True when anything moved (or records
  /// wait for room in the queue).
  virtual bool pump_pass() noexcept = 0;
  /// Sleeps in the kernel for up to timeout_ms (IOCM_INFINITE: no limit)
  /// until a completion comes or a submitter or poster wakes it; returns at
  /// once when the inbox or `records` already holds something.
  void pump_wait(std::uint32_t timeout_ms,
                 const sharded_queue<mpmc_queue<completion>>& records) noexcept {
    // The same handshake as the poller thread's sleep: a submitter (or a
    // poster, nudge) either sees the flag and wakes us, or we see its work.
    if (!prepare_to_sleep()) return;
    if (records.empty_approx()) pump_sleep(timeout_ms);
    awake();
  }
  /// A Post put a record into the queue: wakes a pump_wait that sleeps.
  void nudge() noexcept {
    // (P1) for a post: pairs with (P2) in prepare_to_sleep, as submit's does.
    store_load_fence(sleeping_);
    wake_if_sleeping();
  }
  /// The io_uring setup the probe settled on (an iocm_ring_setup value; 0
  /// for epoll).
  virtual std::uint32_t ring_setup() const noexcept = 0;
  /// IOCM_BACKEND_URING or IOCM_BACKEND_EPOLL.
  virtual std::uint32_t backend() const noexcept = 0;
  /// Bind's part in the poller, on the binding thread (under the engine's
  /// bind lock), before any operation on fd can be submitted. May change
  /// b.kind (epoll: a descriptor epoll refuses runs like a file) and
  /// b.made_nonblocking.
  virtual hosting::HRESULT prepare_handle(int fd, binding& b) noexcept {
    (void)fd;
    (void)b;
    return hosting::S_OK;
  }
  /// Unbind's part once fd's cancel is queued (bind lock held): stop
  /// watching fd (epoll: it leaves the epoll set).
  virtual void forget_handle(int fd, const binding& b) noexcept {
    (void)fd;
    (void)b;
  }
  /// The CPU the thread found itself pinned to once started, or -1.
  int pinned_cpu() const noexcept { return pinned_cpu_.load(std::memory_order_relaxed); }

  /// Queues a request from any thread; false if the inbox is full. Wakes the
  /// poller only if it is asleep. Thread-safe, lock-free.
  bool submit(inbox_item item) noexcept {
    if (!inbox_.try_enqueue(item)) {
      wake_if_sleeping();  // it may be asleep with a full inbox only briefly; make sure
      return false;
    }
    // (P1) pairs with (P2): our inbox store, then the sleeping flag; the poller
    // stores the flag, then looks at the inbox. Both sides need StoreLoad
    // order, or each could miss the other and the poller would sleep on work.
    store_load_fence(sleeping_);
    wake_if_sleeping();
    return true;
  }

 protected:
  /// Makes the thread return from its kernel wait (an eventfd write).
  virtual void wake() noexcept = 0;
  /// pump_wait's sleep in the kernel, which wake() ends.
  virtual void pump_sleep(std::uint32_t timeout_ms) noexcept = 0;

  void wake_if_sleeping() noexcept {
    // Relaxed load first: the common case (poller awake) costs no RMW.
    if (sleeping_.load(std::memory_order_relaxed) != 0 &&
        sleeping_.exchange(0, std::memory_order_acq_rel) != 0)
      wake();
  }

  /// The poller thread calls this before it sleeps in the kernel; false means
  /// work arrived and it must not sleep.
  bool prepare_to_sleep() noexcept {
    sleeping_.store(1, std::memory_order_relaxed);
    // (P2) pairs with (P1).
    store_load_fence(sleeping_);
    if (!inbox_.empty_approx()) {
      sleeping_.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  void awake() noexcept { sleeping_.store(0, std::memory_order_relaxed); }
  /// The thread calls this after pinning itself (or not).
  void record_pinning() noexcept {
    pinned_cpu_.store(os::pinned_cpu_of_current_thread(), std::memory_order_relaxed);
  }

  mpmc_queue<inbox_item> inbox_;

 private:
  // 1 while the poller sleeps, or is about to; the word of its sleep/wake
  // handshake (fence.h).
  alignas(cache_line_size) std::atomic<std::uint32_t> sleeping_{0};
  std::atomic<int> pinned_cpu_{-1};  // read by describe() only
};

/// Builds a poller of the backend platform/backend.cpp picks. Throws
/// std::bad_alloc.
std::unique_ptr<poller> make_poller(poller_setup setup);

}  // namespace iocm::detail
