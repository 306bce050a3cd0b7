// Notifier threads (dequeue a batch, call OnComplete for each record) and
// CloseIoCompletionPort, whose wait is tied to what notifiers deliver.
#include <chrono>
#include <cstdio>
#include <thread>

#include "engine_core.h"
#include "iocm/detail/backoff.h"

namespace iocm::detail {

using namespace hosting;

void engine_core::notifier_main(unsigned index) {
  tl_engine_ = this;
  char name[16];
  std::snprintf(name, sizeof name, "iocm-notify-%u", index);
  os::name_current_thread(name);
  if (const int cpu = cpus_[index % cpus_.size()]; cpu >= 0) os::pin_current_thread(cpu);

  notifier_slot& me = notifiers_[index];
  auto token = queue_.make_consumer();
  completion records[batch_size];
  delivery_context ctx{records, 0, 0, &token};
  tl_delivery_ = &ctx;
  auto leave = [&] {
    return stopping_.load(std::memory_order_acquire) ||
           index >= max_threads_.load(std::memory_order_acquire);
  };

  for (;;) {
    const std::size_t n = queue_.try_dequeue_bulk(token, records, batch_size);
    if (n != 0) {
      // A full batch means more may be waiting: get another thread going, so
      // one slow OnComplete does not hold up the rest (as an IOCP would).
      if (n == batch_size) idle_.wake_one();
      me.busy.store(true, std::memory_order_relaxed);
      ctx.next = 0;
      ctx.count = n;
      deliver_rest_of_batch();
      me.busy.store(false, std::memory_order_relaxed);
      continue;
    }
    if (leave()) break;  // the queue looked empty: nothing is left behind
    bool found = false;
    for (std::uint32_t i = 0; i < config_.notifier_spin && !found; ++i) {
      found = has_records();
      cpu_relax();
    }
    if (!found) idle_.park(me.park, [&] { return has_records() || leave(); });
  }
  tl_delivery_ = nullptr;
  tl_engine_ = nullptr;
  me.running.store(false, std::memory_order_release);  // pairs with spawn/destructor acquire
}

void engine_core::deliver_rest_of_batch() noexcept {
  delivery_context& ctx = *tl_delivery_;
  while (ctx.next < ctx.count) deliver(ctx.records[ctx.next++]);
}

void engine_core::deliver(const completion& record) noexcept {
  auto* ov = static_cast<OVERLAPPED*>(record.overlapped);
  op_state* op = state_of(ov);
  const std::uint16_t slot = op->port_slot;
  const std::uint16_t shard = op->shard;
  ov->Internal = record.error;
  ov->InternalHigh = record.bytes;
  // Release: the runtime may reuse the OVERLAPPED from inside OnComplete
  // (InitializeHostOverlapped, then a new submission); from here on we do
  // not touch it.
  op->phase.store(op_state::idle, std::memory_order_release);
  const current_record outer = tl_current_;
  tl_current_ = {slot, shard, false};
  clr_.load(std::memory_order_acquire)->OnComplete(record.error, record.bytes, ov);
  // Release pairs with pending_total's acquire: OnComplete has returned.
  if (!tl_current_.settled) pending(slot, shard).value.fetch_sub(1, std::memory_order_release);
  tl_current_ = outer;
}

HRESULT engine_core::close_port(HANDLE port) noexcept {
  std::uint16_t slot;
  std::uint64_t st;
  {
    std::lock_guard lock(bind_mutex_);
    if (!decode_port(port, slot, st) || (st & 3) != port_open_state) return E_INVALIDARG;
    // (6) pairs with (5) in submit/post: from here no new operation is
    // accepted on this port, and every accepted one is counted.
    ports_[slot].state.store((st & ~std::uint64_t{3}) | port_closing_state,
                             std::memory_order_seq_cst);
    if (default_port_ == port) default_port_ = nullptr;
    // Unbind the port's handles and cancel what the kernel holds for them;
    // operations still in an inbox are aborted by the poller (port_open).
    handles_.for_each_bound([&](int fd, std::atomic<std::uint64_t>& entry) {
      const binding b = binding::unpack(entry.load(std::memory_order_relaxed));
      if (b.port_slot != slot) return;
      entry.store(0, std::memory_order_release);
      poller& p = *pollers_[b.poller];
      while (!p.submit(cancel_fd_item(fd))) std::this_thread::yield();
    });
  }

  // Wait until every accepted operation of the port has been delivered. The
  // record this thread is delivering right now (Close called from inside
  // OnComplete) cannot finish before we return; count it as done.
  const bool inside_own = tl_current_.port_slot == slot && !tl_current_.settled;
  const std::int64_t self = inside_own ? 1 : 0;
  const bool notifier = on_notifier_thread();
  backoff wait;
  for (unsigned rounds = 0; pending_total(slot) > self; ++rounds) {
    if (notifier && tl_delivery_ != nullptr) {
      // We may be the only notifier (or all others may be busy): deliver the
      // rest of our batch and whatever is queued, nested, so that Close
      // makes progress instead of waiting for itself.
      deliver_rest_of_batch();
      completion record;
      if (queue_.try_dequeue(*tl_delivery_->token, record)) {
        deliver(record);
        continue;
      }
    }
    if (rounds < 1000)
      wait.pause();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  if (inside_own) {
    pending(slot, tl_current_.shard).value.fetch_sub(1, std::memory_order_release);
    tl_current_.settled = true;
  }
  std::lock_guard lock(bind_mutex_);
  ports_[slot].state.store(st & ~std::uint64_t{3},
                           std::memory_order_release);  // free, same generation
  return S_OK;
}

}  // namespace iocm::detail
