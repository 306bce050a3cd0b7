// Notifier threads (dequeue a batch, call OnComplete for each record) and
// CloseIoCompletionPort, whose wait is tied to what notifiers deliver.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "engine_core.h"
#include "iocm/detail/backoff.h"
#include "iocm/detail/fence.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr std::uint64_t claim_field = 0xFFF;  // next: bits 0-11, count: bits 12-23
std::uint64_t claim_next(std::uint64_t w) noexcept { return w & claim_field; }
std::uint64_t claim_count(std::uint64_t w) noexcept { return (w >> 12) & claim_field; }

}  // namespace

void engine_core::notifier_main(unsigned index) {
  tl_engine_ = this;
  char name[16];
  std::snprintf(name, sizeof name, "iocm-notify-%u", index);
  os::name_current_thread(name);
  // On its home shard's node, CPUs without a poller first (docs/NUMA.md).
  const unsigned home = plan_.notifier_shard(index);
  if (const int cpu = plan_.notifier_cpu(index); reach_.can_pin(cpu)) os::pin_current_thread(cpu);

  notifier_slot& me = notifiers_[index];
  me.cpu.store(os::pinned_cpu_of_current_thread(), std::memory_order_relaxed);
  auto& token = me.token;
  completion records[batch_size];
  delivery_context ctx{&me, records, &token};
  tl_delivery_ = &ctx;
  std::uint64_t generation = me.claim.load(std::memory_order_relaxed) >> 24;
  auto leave = [&] {
    return stopping_.load(std::memory_order_acquire) ||
           index >= max_threads_.load(std::memory_order_acquire);
  };
  auto work_waiting = [&] { return has_records() || stealable(); };

  for (;;) {
    const std::size_t n = queue_.try_dequeue_bulk(token, records, batch_size);
    if (n == 1) {
      // Nothing another thread could take over: no sharing needed. But one
      // record need not be all there is (a dequeue takes from one lane of
      // one shard): if more waits while others sleep, wake one, since this
      // OnComplete may block. The parked count is read first: one load
      // when nobody sleeps.
      if (idle_.parked() != 0 && !queue_.empty_approx()) idle_.wake_one(home);
      me.busy.store(true, std::memory_order_relaxed);
      deliver(records[0]);
      me.busy.store(false, std::memory_order_relaxed);
      continue;
    }
    if (n > 1) {
      // Publish the batch before delivering any of it: if one OnComplete
      // blocks, idle notifiers take the rest (docs/ENGINE.md, "Notifiers").
      for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t w[2];
        std::memcpy(w, &records[i], sizeof w);
        me.words[2 * i].store(w[0], std::memory_order_relaxed);
        me.words[2 * i + 1].store(w[1], std::memory_order_relaxed);
      }
      ++generation;
      // (E3) Release pairs with the thief's acquire load of claim: the words
      // above are visible to whoever sees this generation.
      me.claim.store(generation << 24 | std::uint64_t{n} << 12, std::memory_order_release);
      // (E4) pairs with (E5): either we see a spinning notifier (it will find
      // the batch) or it sees the batch before it parks.
      store_load_fence(spinning_);
      if (n == batch_size || spinning_.load(std::memory_order_relaxed) == 0) idle_.wake_one(home);
      me.busy.store(true, std::memory_order_relaxed);
      deliver_rest_of_batch();
      me.busy.store(false, std::memory_order_relaxed);
      continue;
    }
    if (steal_one(me)) continue;
    if (leave()) {
      // The queue looked empty: nothing is left behind. Decide under the
      // limits' mutex, so that a SetMaxThreads raising the maximum right now
      // either sees us running (and counts on us) or sees us gone.
      std::lock_guard lock(threads_mutex_);
      if (leave()) {
        me.running.store(false, std::memory_order_release);  // pairs with spawn/destructor acquire
        break;
      }
      continue;
    }
    spinning_.fetch_add(1, std::memory_order_relaxed);
    bool found = false;
    for (std::uint32_t i = 0; i < config_.notifier_spin && !found; ++i) {
      found = work_waiting() || leave();  // a long spin must not delay shutdown
      // Polite spinning: a host thread pinned to our CPU may be the one that
      // produces our work; let it run now and then.
      if ((i & 63) == 63)
        std::this_thread::yield();
      else
        cpu_relax();
    }
    // (E5) seq_cst RMW, then the predicate re-checks inside park().
    spinning_.fetch_sub(1, std::memory_order_seq_cst);
    if (!found) idle_.park(me.park, home, [&] { return work_waiting() || leave(); });
  }
  tl_delivery_ = nullptr;
  tl_engine_ = nullptr;
}

void engine_core::deliver_rest_of_batch() noexcept {
  delivery_context& ctx = *tl_delivery_;
  std::atomic<std::uint64_t>& claim = ctx.slot->claim;
  std::uint64_t w = claim.load(std::memory_order_relaxed);
  // A CAS, not fetch_add: `next` must never run past `count` (Close may call
  // this many times). acq_rel: claims exactly one record; thieves race on
  // the same word.
  while (claim_next(w) < claim_count(w)) {
    if (!claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                     std::memory_order_relaxed))
      continue;
    deliver(ctx.records[claim_next(w)]);
    w = claim.load(std::memory_order_relaxed);
  }
}

bool engine_core::stealable() const noexcept {
  const std::uint32_t n = spawned_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t w = notifiers_[i].claim.load(std::memory_order_relaxed);
    if (claim_next(w) < claim_count(w)) return true;
  }
  return false;
}

bool engine_core::steal_one(const notifier_slot& self) noexcept {
  const std::uint32_t n = spawned_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) {
    notifier_slot& victim = notifiers_[i];
    if (&victim == &self) continue;
    std::uint64_t w = victim.claim.load(std::memory_order_acquire);  // pairs with (E3)
    while (claim_next(w) < claim_count(w)) {
      const std::size_t k = claim_next(w);
      std::uint64_t words[2] = {victim.words[2 * k].load(std::memory_order_relaxed),
                                victim.words[2 * k + 1].load(std::memory_order_relaxed)};
      // The owner rewrites the words only after every record of this
      // generation was claimed, which changes claim: a successful CAS proves
      // the words we read belong to record k of generation w.
      if (victim.claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
        completion record;
        std::memcpy(&record, words, sizeof record);
        notifier_slot& me = const_cast<notifier_slot&>(self);
        me.busy.store(true, std::memory_order_relaxed);
        deliver(record);
        me.busy.store(false, std::memory_order_relaxed);
        return true;
      }
    }
  }
  return false;
}

void engine_core::deliver(const completion& record) noexcept {
  auto* ov = static_cast<OVERLAPPED*>(record.overlapped);
  op_state* op = state_of(ov);
  const std::uint16_t slot = op->port_slot;
  const std::uint16_t counter = op->counter;
  ov->Internal = record.error;
  ov->InternalHigh = record.bytes;
  // Release: the runtime may reuse the OVERLAPPED from inside OnComplete
  // (InitializeHostOverlapped, then a new submission); from here on we do
  // not touch it.
  op->phase.store(op_state::idle, std::memory_order_release);
  const current_record outer = tl_current_;
  tl_current_ = {this, slot, counter, false};
  clr_.load(std::memory_order_acquire)->OnComplete(record.error, record.bytes, ov);
  // Release pairs with pending_total's acquire: OnComplete has returned.
  if (!tl_current_.settled) pending(slot, counter).value.fetch_sub(1, std::memory_order_release);
  tl_current_ = outer;
}

bool engine_core::help_deliver() noexcept {
  // A pumped engine's waits deliver on this thread unless another pumps.
  if (pumped_) return pump_help();
  if (!on_notifier_thread() || tl_delivery_ == nullptr) return false;
  // We may be the only notifier (or all others may be busy): deliver the
  // rest of our batch and whatever is queued, nested, so that the caller
  // makes progress instead of waiting for itself.
  deliver_rest_of_batch();
  if (steal_one(*tl_delivery_->slot)) return true;
  completion record;
  if (!queue_.try_dequeue(*tl_delivery_->token, record)) return false;
  deliver(record);
  return true;
}

HRESULT engine_core::close_port(HANDLE port) noexcept {
  std::uint16_t slot;
  std::uint64_t st;
  std::vector<int> made_nonblocking;  // restored once nothing on them is left
  {
    std::lock_guard lock(bind_mutex_);
    if (!decode_port(port, slot, st) || (st & 3) != port_open_state) return E_INVALIDARG;
    // (E2) pairs with (E1) in submit/post: from here no new operation is
    // accepted on this port, and every accepted one is counted.
    ports_[slot].state.store((st & ~std::uint64_t{3}) | port_closing_state,
                             std::memory_order_seq_cst);
    if (default_port_ == port) default_port_ = nullptr;
  }
  // Unbind the port's handles and cancel what the kernel holds for them;
  // operations still in an inbox are aborted by the poller (port_open). No
  // new binding can join the port now. An inbox without room is waited for
  // without the bind lock: in a pumped engine only the pump empties it, and
  // the pump's OnComplete may want that lock (a Bind after an Accept).
  for (int next = 0; next < handle_table::max_fd;) {
    {
      std::lock_guard lock(bind_mutex_);
      next = handles_.for_each_bound(next, [&](int fd, std::atomic<std::uint64_t>& entry) {
        const binding b = binding::unpack(entry.load(std::memory_order_relaxed));
        if (b.port_slot != slot) return true;
        poller& p = *pollers_[b.poller];
        if (!p.submit(cancel_fd_item(fd))) return false;  // this one and the rest after a wait
        entry.store(0, std::memory_order_release);
        p.forget_handle(fd, b);
        // Not blocking again yet: the operations the cancel aborts may still
        // be tried before it, and must not block the poller.
        if (b.made_nonblocking) {
          try {
            made_nonblocking.push_back(fd);
          } catch (const std::bad_alloc&) {  // left non-blocking; nothing else is lost
          }
        }
        return true;
      });
    }
    if (next < handle_table::max_fd) wait_for_inbox();
  }

  // Wait until every accepted operation of the port has been delivered. The
  // record this thread is delivering right now (Close called from inside
  // OnComplete) cannot finish before we return; count it as done. Only a
  // record of this engine: a callback of another engine may close our port.
  const bool inside_own =
      tl_current_.engine == this && tl_current_.port_slot == slot && !tl_current_.settled;
  const std::int64_t self = inside_own ? 1 : 0;
  wait_delivering([&] { return pending_total(slot) <= self; });
  if (inside_own) {
    pending(slot, tl_current_.counter).value.fetch_sub(1, std::memory_order_release);
    tl_current_.settled = true;
  }
  std::lock_guard lock(bind_mutex_);
  for (const int fd : made_nonblocking) restore_blocking_locked(fd);
  ports_[slot].state.store(st & ~std::uint64_t{3},
                           std::memory_order_release);  // free, same generation
  return S_OK;
}

}  // namespace iocm::detail
