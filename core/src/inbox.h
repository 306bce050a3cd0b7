// A poller's inbox: the requests other threads hand to one poller (an
// operation to submit, a cancel, an Unbind), and the sleep/wake handshake
// that lets the poller sleep in the kernel without missing one.
//
// Memory ordering: a request is published by the queue's own release/acquire
// pair. The handshake is Dekker's: a submitter stores its request, then
// loads `sleeping_`; the poller stores `sleeping_`, then loads the queue.
// Each side needs StoreLoad order between its store and its load (fence.h),
// or each could miss the other and the poller would sleep on work.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "iocm/cache_line.h"
#include "iocm/detail/fence.h"
#include "iocm/mpmc_queue.h"
#include "os.h"

namespace iocm::detail {

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
// (carried_bytes* | 5): bytes received ahead on a socket before an Unbind,
// for the poller it is bound to again (docs/ENGINE.md, "Receiving ahead").
inline constexpr inbox_item inbox_carry = 5;
// (fd << 3 | 6): register fd in the poller's file table (IOCM_FIXED_FILES),
// queued by Bind before any operation on fd.
inline constexpr inbox_item inbox_register = 6;
inline inbox_item cancel_fd_item(int fd) noexcept {
  return (static_cast<inbox_item>(static_cast<std::uint32_t>(fd)) << 3) | inbox_cancel_fd;
}

/// Bytes a poller received ahead of the host's Recvs on a socket that was
/// then unbound: kept by the engine until the same socket (the same cookie)
/// is bound again, and then served to its first Recvs. 8-aligned (tagged).
struct alignas(8) carried_bytes {
  int fd = -1;
  std::uint64_t cookie = 0;  // SO_COOKIE: tells the socket from a later one with its number
  std::string bytes;
  std::size_t taken = 0;  // bytes of `bytes` already served
  // A listener's connections accepted ahead that no Accept took; closed
  // with this object unless a Bind of the listener takes them out.
  std::vector<int> sockets;

  carried_bytes() = default;
  carried_bytes(const carried_bytes&) = delete;
  carried_bytes& operator=(const carried_bytes&) = delete;
  ~carried_bytes() {
    for (const int s : sockets) os::close_descriptor(s);
  }
};

/// A request a thread waits on, on its own stack, until the poller answers
/// (Cancel, Unbind): the poller's answer() is its last touch of it.
struct alignas(8) poller_request {
  int fd = -1;
  /// Unbind: bytes received ahead that no Recv took (the poller fills it).
  std::unique_ptr<carried_bytes> carried;
  /// Cancel of one: the OVERLAPPED's address, a key compared with the
  /// addresses of the operations the poller holds, never dereferenced.
  const void* key = nullptr;
  std::uint32_t found = 0;  // the answer: operations found (Cancel)
  // Cancel of all: cancels the kernel will count that were the poller's
  // own (a socket's receive ahead), not the host's operations.
  std::uint32_t own = 0;
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

class poller_inbox {
 public:
  poller_inbox(std::size_t capacity, std::pmr::memory_resource* memory)
      : queue_(queue_options{.capacity = capacity, .producer_lanes = 0, .memory = memory}) {}

  // --- Any thread. Thread-safe, lock-free. `wake` makes the poller return
  // --- from its kernel wait; it is called only while the poller sleeps.

  /// Queues a request; false if the inbox is full.
  template <class Wake>
  bool push(inbox_item item, Wake&& wake) noexcept {
    if (!queue_.try_enqueue(item)) {
      wake_if_sleeping(wake);  // it may be asleep with a full inbox only briefly; make sure
      return false;
    }
    // (P1) pairs with (P2): our request, then the sleeping flag.
    store_load_fence(sleeping_);
    wake_if_sleeping(wake);
    return true;
  }
  /// Work for the poller arrived elsewhere (a Post into the completion
  /// queue, for a pumped engine's pump): wakes it if it sleeps.
  template <class Wake>
  void nudge(Wake&& wake) noexcept {
    // (P1) for a post: pairs with (P2) in prepare_to_sleep, as push's does.
    store_load_fence(sleeping_);
    wake_if_sleeping(wake);
  }

  // --- The poller's side (one thread at a time).

  /// Takes up to `most` requests, oldest first; returns how many.
  std::size_t take(inbox_item* items, std::size_t most) noexcept {
    return queue_.try_dequeue_bulk(items, most);
  }
  bool empty() const noexcept { return queue_.empty_approx(); }
  /// Before sleeping in the kernel; false means work arrived and the poller
  /// must not sleep.
  bool prepare_to_sleep() noexcept {
    sleeping_.store(1, std::memory_order_relaxed);
    // (P2) pairs with (P1): the flag, then the inbox.
    store_load_fence(sleeping_);
    if (!queue_.empty_approx()) {
      sleeping_.store(0, std::memory_order_relaxed);
      return false;
    }
    return true;
  }
  /// After the kernel wait.
  void awake() noexcept { sleeping_.store(0, std::memory_order_relaxed); }

 private:
  template <class Wake>
  void wake_if_sleeping(Wake& wake) noexcept {
    // Relaxed load first: the common case (poller awake) costs no RMW.
    if (sleeping_.load(std::memory_order_relaxed) != 0 &&
        sleeping_.exchange(0, std::memory_order_acq_rel) != 0)
      wake();
  }

  mpmc_queue<inbox_item> queue_;
  // 1 while the poller sleeps, or is about to; the word of the handshake.
  alignas(cache_line_size) std::atomic<std::uint32_t> sleeping_{0};
};

}  // namespace iocm::detail
