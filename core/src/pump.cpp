// A pumped engine's pump (pump.h).
#include "pump.h"

#include <algorithm>
#include <chrono>

#include "os.h"

namespace iocm::detail {

using namespace hosting;

pump::pump(poller& p, completion_queue& queue, delivery& deliver, port_table::delivered_row& row,
           std::size_t most)
    : poller_(p),
      queue_(queue),
      delivery_(deliver),
      most_(most),
      token_(queue.make_consumer(0)),
      row_(row) {}

bool pump::acquire() noexcept {
  // Acquire pairs with release()'s release: what the last owner did to the
  // poller and the pump's batch happens before what we do.
  if (owned_.exchange(true, std::memory_order_acquire)) return false;
  outer_ = delivery_.enter_thread(row_);  // another engine's pump or notifier, when nested
  // The poller's writes to a pipe whose reader is gone would raise SIGPIPE
  // on this thread, as they would on a poller thread, which blocks it.
  static thread_local bool sigpipe_blocked = false;
  if (!sigpipe_blocked) {
    os::block_sigpipe();
    sigpipe_blocked = true;
  }
  return true;
}

void pump::release() noexcept {
  delivery::leave_thread(outer_);
  owned_.store(false, std::memory_order_release);
}

bool pump::move_inbox() noexcept {
  const bool owner = delivery_.on_delivering_thread();
  if (!owner && !acquire()) return false;
  poller_.pump_pass();
  if (!owner) release();
  return true;
}

bool pump::help() noexcept {
  const bool owner = delivery_.on_delivering_thread();
  if (!owner && !acquire()) return false;  // the owner delivers
  bool did = false;
  if (next_ < count_) {
    // Close from inside OnComplete: the pump's own batch may hold the very
    // records Close waits for.
    deliver(records_[next_++]);
    did = true;
  } else {
    did = poller_.pump_pass();
    completion record;
    if (queue_.try_dequeue(token_, record)) {
      deliver(record);
      did = true;
    }
  }
  if (!owner) release();
  return did;
}

HRESULT pump::run(DWORD timeout_ms, DWORD* delivered) noexcept {
  if (delivered != nullptr) *delivered = 0;
  if (delivery_.on_delivering_thread() || !acquire()) return HRESULT_FROM_WIN32(ERROR_BUSY);
  using clock = std::chrono::steady_clock;
  const clock::time_point start = clock::now();
  delivered_ = 0;
  for (;;) {
    bool moved = poller_.pump_pass();
    while (delivered_ < most_) {
      count_ = queue_.try_dequeue_bulk(token_, records_, std::min(batch_size, most_ - delivered_));
      next_ = 0;
      if (count_ == 0) break;
      moved = true;
      // A Close inside OnComplete may deliver some of the batch (help).
      while (next_ < count_) deliver(records_[next_++]);
    }
    count_ = next_ = 0;
    if (delivered_ >= most_) break;
    if (moved) continue;  // until nothing moves
    if (delivered_ != 0 || timeout_ms == 0) break;
    DWORD left = IOCM_INFINITE;
    if (timeout_ms != IOCM_INFINITE) {
      const auto spent =
          std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
      if (spent.count() >= timeout_ms) break;
      left = timeout_ms - static_cast<DWORD>(spent.count());
    }
    poller_.pump_wait(left, queue_);
  }
  const auto n = static_cast<DWORD>(delivered_);
  release();  // the last touch of the engine: it may be destroyed now
  if (delivered != nullptr) *delivered = n;
  return S_OK;
}

}  // namespace iocm::detail
