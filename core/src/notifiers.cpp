// The notifier pool (notifiers.h): the notifier threads' loop, batch
// sharing and stealing, and the thread limits.
#include "notifiers.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "iocm/detail/backoff.h"
#include "iocm/detail/fence.h"
#include "os.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr std::uint64_t claim_field = 0xFFF;  // next: bits 0-11, count: bits 12-23
std::uint64_t claim_next(std::uint64_t w) noexcept { return w & claim_field; }
std::uint64_t claim_count(std::uint64_t w) noexcept { return (w >> 12) & claim_field; }

}  // namespace

notifier_pool::notifier_pool(completion_queue& queue, port_table& ports, const placement_plan& plan,
                             const placement_reach& reach, delivery& deliver,
                             std::uint32_t min_threads, std::uint32_t max_threads,
                             std::uint32_t spin, bool threads)
    : queue_(queue),
      ports_(ports),
      plan_(plan),
      reach_(reach),
      delivery_(deliver),
      spin_(spin),
      threads_(threads),
      min_threads_(min_threads),
      max_threads_(max_threads),
      slots_(new notifier_slot[max_notifiers]),
      idle_(max_notifiers, plan.shards.size()) {}

HRESULT notifier_pool::start() noexcept {
  std::lock_guard lock(threads_mutex_);
  return spawn_locked(max_threads_.load(std::memory_order_relaxed));
}

void notifier_pool::stop() noexcept {
  stopping_.store(true, std::memory_order_release);
  idle_.wake_all();
  // Not under threads_mutex_: a leaving notifier takes it to mark itself gone.
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i) {
    // A thread parked between our wake_all and its own check is woken again
    // here until it has seen stopping_.
    while (slots_[i].running.load(std::memory_order_acquire)) {
      idle_.wake_all();
      std::this_thread::yield();
    }
    if (slots_[i].thread.joinable()) slots_[i].thread.join();
  }
}

HRESULT notifier_pool::spawn_locked(unsigned upto) noexcept {
  if (!threads_) return S_OK;  // a pumped engine: the limits are kept, and govern no thread
  for (unsigned i = 0; i < upto; ++i) {
    notifier_slot& slot = slots_[i];
    if (slot.running.load(std::memory_order_acquire)) continue;
    if (slot.thread.joinable()) slot.thread.join();  // a retired thread: reuse its slot
    try {
      // Made here, not on the new thread: an allocation that fails must be
      // an HRESULT for the caller, not an exception on a thread of ours.
      slot.token = queue_.make_consumer(plan_.notifier_shard(i));
      // The slot's row of delivered counts: the same for every thread that
      // ever runs in this slot.
      slot.delivered = &ports_.deliverer(i);
    } catch (const std::exception&) {
      return E_OUTOFMEMORY;
    }
    slot.running.store(true, std::memory_order_release);
    slot.cpu.store(-2, std::memory_order_relaxed);
    try {
      slot.thread = std::thread([this, i] { notifier_main(i); });
    } catch (const std::exception&) {
      // std::system_error when the kernel refuses a thread, std::bad_alloc
      // when the thread's state cannot be allocated: both are out of memory.
      slot.running.store(false, std::memory_order_release);
      return E_OUTOFMEMORY;
    }
    if (i + 1 > spawned_.load(std::memory_order_relaxed))
      spawned_.store(i + 1, std::memory_order_release);  // thieves scan this many slots
  }
  return S_OK;
}

HRESULT notifier_pool::set_max_threads(DWORD n) noexcept {
  std::lock_guard lock(threads_mutex_);
  if (n == 0 || n < min_threads_.load(std::memory_order_relaxed) || n > max_notifiers)
    return E_INVALIDARG;
  max_threads_.store(n, std::memory_order_release);
  idle_.wake_all();  // threads above the new maximum see it and leave
  return spawn_locked(n);
}

HRESULT notifier_pool::get_max_threads(DWORD* n) noexcept {
  if (n == nullptr) return E_POINTER;
  *n = max_threads_.load(std::memory_order_acquire);
  return S_OK;
}

HRESULT notifier_pool::set_min_threads(DWORD n) noexcept {
  std::lock_guard lock(threads_mutex_);
  if (n == 0 || n > max_threads_.load(std::memory_order_relaxed)) return E_INVALIDARG;
  min_threads_.store(n, std::memory_order_release);
  return S_OK;
}

HRESULT notifier_pool::get_min_threads(DWORD* n) noexcept {
  if (n == nullptr) return E_POINTER;
  *n = min_threads_.load(std::memory_order_acquire);
  return S_OK;
}

HRESULT notifier_pool::get_available_threads(DWORD* n, std::uint32_t others) noexcept {
  if (n == nullptr) return E_POINTER;
  const std::uint32_t busy = this->busy() + others;
  const std::uint32_t max = max_threads_.load(std::memory_order_acquire);
  *n = busy >= max ? 0 : max - busy;
  return S_OK;
}

void notifier_pool::notifier_main(unsigned index) {
  const delivery::outer_thread outer = delivery_.enter_thread(*slots_[index].delivered);
  char name[16];
  std::snprintf(name, sizeof name, "iocm-notify-%u", index);
  os::name_current_thread(name);
  // On its home shard's node, CPUs without a poller first (docs/NUMA.md).
  const unsigned home = plan_.notifier_shard(index);
  if (const int cpu = plan_.notifier_cpu(index); reach_.can_pin(cpu)) os::pin_current_thread(cpu);

  notifier_slot& me = slots_[index];
  me.cpu.store(os::pinned_cpu_of_current_thread(), std::memory_order_relaxed);
  auto& token = me.token;
  completion records[batch_size];
  batch_context ctx{&me, records, &token};
  tl_batch_ = &ctx;
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
      delivery_.deliver(records[0]);
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
    for (std::uint32_t i = 0; i < spin_ && !found; ++i) {
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
  tl_batch_ = nullptr;
  delivery::leave_thread(outer);
}

void notifier_pool::deliver_rest_of_batch() noexcept {
  batch_context& ctx = *tl_batch_;
  std::atomic<std::uint64_t>& claim = ctx.slot->claim;
  std::uint64_t w = claim.load(std::memory_order_relaxed);
  // A CAS, not fetch_add: `next` must never run past `count` (Close may call
  // this many times). acq_rel: claims exactly one record; thieves race on
  // the same word.
  while (claim_next(w) < claim_count(w)) {
    if (!claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                     std::memory_order_relaxed))
      continue;
    delivery_.deliver(ctx.records[claim_next(w)]);
    w = claim.load(std::memory_order_relaxed);
  }
}

bool notifier_pool::stealable() const noexcept {
  const std::uint32_t n = spawned_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) {
    const std::uint64_t w = slots_[i].claim.load(std::memory_order_relaxed);
    if (claim_next(w) < claim_count(w)) return true;
  }
  return false;
}

bool notifier_pool::steal_one(const notifier_slot& self) noexcept {
  const std::uint32_t n = spawned_.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < n; ++i) {
    notifier_slot& victim = slots_[i];
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
        delivery_.deliver(record);
        me.busy.store(false, std::memory_order_relaxed);
        return true;
      }
    }
  }
  return false;
}

bool notifier_pool::help_deliver() noexcept {
  if (!delivery_.on_delivering_thread() || tl_batch_ == nullptr) return false;
  // We may be the only notifier (or all others may be busy): deliver the
  // rest of our batch and whatever is queued, nested, so that the caller
  // makes progress instead of waiting for itself.
  deliver_rest_of_batch();
  if (steal_one(*tl_batch_->slot)) return true;
  completion record;
  if (!queue_.try_dequeue(*tl_batch_->token, record)) return false;
  delivery_.deliver(record);
  return true;
}

std::uint32_t notifier_pool::alive() const noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i)
    n += slots_[i].running.load(std::memory_order_relaxed) ? 1 : 0;
  return n;
}

std::uint32_t notifier_pool::busy() const noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i)
    n += slots_[i].busy.load(std::memory_order_relaxed) ? 1 : 0;
  return n;
}

std::string notifier_pool::describe() const {
  std::string out;
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i) {
    if (!slots_[i].running.load(std::memory_order_acquire)) continue;
    const int cpu = slots_[i].cpu.load(std::memory_order_relaxed);
    out += "notifier " + std::to_string(i) + " found " + describe_pinning(cpu) + "\n";
  }
  return out;
}

}  // namespace iocm::detail
