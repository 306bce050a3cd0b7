// A pumped engine's pump (IOCM_PUMPED): no thread of the engine's own
// delivers; the host's threads call Pump, one at a time, and the one that
// owns the pump runs the engine's only poller pass by pass and delivers on
// itself. A thread that must wait for the engine (Close, Unbind, Cancel, a
// full inbox) takes the pump while nobody else owns it, and moves things on
// itself.
#pragma once

#include <atomic>
#include <cstddef>

#include "completion_queue.h"
#include "delivery.h"
#include "iocm/hosting.h"
#include "poller.h"

namespace iocm::detail {

class pump {
 public:
  /// `most`: the most records one Pump call delivers (the queue's capacity);
  /// `row`: where the pump's owner counts what it delivers.
  pump(poller& p, completion_queue& queue, delivery& deliver, port_table::delivered_row& row,
       std::size_t most);
  pump(const pump&) = delete;
  pump& operator=(const pump&) = delete;

  /// IIocmPump::Pump: delivers what is ready, waiting up to timeout_ms for
  /// the first record. ERROR_BUSY when another thread owns the pump or the
  /// caller is inside OnComplete of this engine.
  hosting::HRESULT run(hosting::DWORD timeout_ms, hosting::DWORD* delivered) noexcept;

  /// One owner at a time: the thread on which the engine's
  /// on_delivering_thread() is true. False when another thread owns it.
  bool acquire() noexcept;
  void release() noexcept;
  /// Another thread owns the pump now (it will deliver what is queued).
  bool owned_elsewhere() const noexcept {
    return owned_.load(std::memory_order_acquire) && !delivery_.on_delivering_thread();
  }

  /// engine_waits::help_deliver of a pumped engine: the rest of the pump's
  /// batch, else a poller pass and one record; false when another thread
  /// pumps (it delivers) or nothing moved.
  bool help() noexcept;
  /// engine_waits::wait_for_inbox of a pumped engine: a poller pass when
  /// nobody else pumps (it never delivers, so this is safe under the bind
  /// lock); false when another thread owns the pump.
  bool move_inbox() noexcept;
  /// A Post put a record into the queue: a pump waiting in the kernel
  /// delivers it.
  void nudge() noexcept { poller_.nudge(); }

 private:
  static constexpr std::size_t batch_size = 32;

  /// The owner delivers, counting it for this Pump call.
  void deliver(const completion& record) noexcept {
    delivery_.deliver(record);
    ++delivered_;
  }

  poller& poller_;
  completion_queue& queue_;
  delivery& delivery_;
  const std::size_t most_;
  completion_queue::consumer_token token_;

  std::atomic<bool> owned_{false};
  port_table::delivered_row& row_;
  delivery::outer_thread outer_{};  // whom the owner delivered for before it took the pump
  // The batch the pump is delivering, shared with a nested Close's help.
  // Touched by the pump's owner only.
  completion records_[batch_size];
  std::size_t count_ = 0, next_ = 0;
  std::size_t delivered_ = 0;  // in this Pump call
};

}  // namespace iocm::detail
