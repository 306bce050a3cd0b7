// The engine core: ports, bindings, submission and thread limits. Notifier
// threads and Close's wait live in notifiers.cpp.
#include "engine_core.h"

#include <algorithm>
#include <bit>
#include <new>
#include <system_error>

#include "iocm/detail/backoff.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr unsigned max_pollers = 256;
constexpr unsigned max_ports_limit = 1024;
constexpr std::uint32_t max_ring_entries = 32768;
constexpr std::uint32_t max_queue_capacity = 1u << 24;
constexpr int full_inbox_retries = 1 << 14;  // yields before a submission is refused

bool pow2_in(std::uint32_t v, std::uint32_t lo, std::uint32_t hi) noexcept {
  return v >= lo && v <= hi && std::has_single_bit(v);
}

int fd_of(HANDLE h) noexcept {
  const auto v = reinterpret_cast<std::intptr_t>(h);
  return v < 0 || v >= handle_table::max_fd ? -1 : static_cast<int>(v);
}

}  // namespace

thread_local engine_core* engine_core::tl_engine_ = nullptr;
thread_local engine_core::delivery_context* engine_core::tl_delivery_ = nullptr;
thread_local engine_core::current_record engine_core::tl_current_{};

HRESULT engine_core::resolve(const iocm_config* in, iocm_config& out) noexcept {
  iocm_config_init(&out);
  if (in != nullptr) {
    if (in->struct_size != sizeof(iocm_config)) return E_INVALIDARG;
    out = *in;
  }
  int cpus[1024];
  const unsigned ncpu = std::max(1u, os::usable_cpus(cpus, 1024));
  if (out.pollers == 0) out.pollers = std::min(ncpu, max_pollers);
  if (out.min_threads == 0) out.min_threads = 1;
  if (out.max_threads == 0)
    out.max_threads = std::max(out.min_threads, std::min(2 * ncpu, max_notifiers));
  if (out.pollers > max_pollers || out.min_threads > out.max_threads ||
      out.max_threads > max_notifiers || !pow2_in(out.ring_entries, 2, max_ring_entries) ||
      !pow2_in(out.queue_capacity, 64, max_queue_capacity) ||
      !pow2_in(out.inbox_capacity, 64, max_queue_capacity) || out.max_ports == 0 ||
      out.max_ports > max_ports_limit || out.ring_setup > IOCM_RING_PLAIN ||
      (out.flags & ~std::uint32_t{IOCM_NO_PINNING}) != 0)
    return E_INVALIDARG;
  return S_OK;
}

engine_core::engine_core(const iocm_config& config)
    : config_(config),
      shards_(config.pollers + 1),
      queue_(queue_options{config.queue_capacity, config.pollers, 64, nullptr, 0}),
      ports_(new port_entry[config.max_ports]),
      pending_(new pending_counter[std::size_t{config.max_ports} * (config.pollers + 1)]),
      min_threads_(config.min_threads),
      max_threads_(config.max_threads),
      notifiers_(new notifier_slot[max_notifiers]) {
  int cpus[1024];
  const unsigned n = std::min(1024u, os::usable_cpus(cpus, 1024));
  cpus_.assign(cpus, cpus + n);
  if (cpus_.empty() || (config.flags & IOCM_NO_PINNING) != 0) cpus_.assign(1, -1);
}

std::unique_ptr<engine_core> engine_core::create(const iocm_config& config,
                                                 HRESULT* error) noexcept {
  std::unique_ptr<engine_core> core;
  try {
    core.reset(new engine_core(config));
    for (unsigned i = 0; i < config.pollers; ++i) {
      poller_setup setup;
      setup.core = core.get();
      setup.index = i;
      setup.cpu = core->cpus_[i % core->cpus_.size()];
      setup.ring_entries = config.ring_entries;
      setup.ring_setup = config.ring_setup;
      setup.inbox_capacity = config.inbox_capacity;
      setup.completions = core->queue_.make_producer();
      core->pollers_.push_back(make_poller(std::move(setup)));
      if (const HRESULT hr = core->pollers_.back()->start(); FAILED(hr)) {
        *error = hr;
        return nullptr;  // the destructor stops the pollers that started
      }
    }
    std::lock_guard lock(core->threads_mutex_);
    if (const HRESULT hr = core->spawn_notifiers_locked(config.max_threads); FAILED(hr)) {
      *error = hr;
      return nullptr;
    }
  } catch (const std::bad_alloc&) {
    *error = E_OUTOFMEMORY;
    return nullptr;
  } catch (const std::system_error&) {  // a thread could not be started
    *error = E_OUTOFMEMORY;
    return nullptr;
  }
  *error = S_OK;
  return core;
}

engine_core::~engine_core() {
  // Close every port still open: in-flight operations complete (aborted)
  // while notifiers still run.
  for (std::uint32_t slot = 0; slot < config_.max_ports; ++slot) {
    const std::uint64_t st = ports_[slot].state.load(std::memory_order_acquire);
    if ((st & 3) == port_open_state)
      close_port(
          reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>((st >> 2) << 16 | (slot + 1))));
  }
  for (auto& p : pollers_) p->stop_and_join();
  stopping_.store(true, std::memory_order_release);
  idle_.wake_all();
  // Not under threads_mutex_: a leaving notifier takes it to mark itself gone.
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i) {
    // A thread parked between our wake_all and its own check is woken again
    // here until it has seen stopping_.
    while (notifiers_[i].running.load(std::memory_order_acquire)) {
      idle_.wake_all();
      std::this_thread::yield();
    }
    if (notifiers_[i].thread.joinable()) notifiers_[i].thread.join();
  }
  if (auto* clr = clr_.load(std::memory_order_acquire)) clr->Release();
}

// --- ports ---------------------------------------------------------------

bool engine_core::decode_port(HANDLE port, std::uint16_t& slot,
                              std::uint64_t& state) const noexcept {
  const auto v = reinterpret_cast<std::uintptr_t>(port);
  const std::uintptr_t s = v & 0xFFFF;
  if (s == 0 || s > config_.max_ports) return false;
  slot = static_cast<std::uint16_t>(s - 1);
  state = ports_[slot].state.load(std::memory_order_acquire);
  return (state >> 2) == (v >> 16);
}

HANDLE engine_core::open_port_locked() noexcept {
  for (std::uint32_t slot = 0; slot < config_.max_ports; ++slot) {
    const std::uint64_t st = ports_[slot].state.load(std::memory_order_relaxed);
    if ((st & 3) != port_free_state) continue;
    std::uint64_t gen = ((st >> 2) + 1) & binding::generation_mask;
    if (gen == 0) gen = 1;
    ports_[slot].state.store(gen << 2 | port_open_state, std::memory_order_release);
    return reinterpret_cast<HANDLE>(static_cast<std::uintptr_t>(gen << 16 | (slot + 1)));
  }
  return nullptr;
}

HRESULT engine_core::create_port(HANDLE* port) noexcept {
  if (port == nullptr) return E_POINTER;
  std::lock_guard lock(bind_mutex_);
  *port = open_port_locked();
  return *port != nullptr ? S_OK : HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
}

std::int64_t engine_core::pending_total(std::uint16_t slot) const noexcept {
  std::int64_t sum = 0;
  // Acquire pairs with the notifiers' release decrements: once the sum is
  // seen at zero, every OnComplete for the port has returned.
  for (unsigned s = 0; s < shards_; ++s)
    sum += pending_[slot * shards_ + s].value.load(std::memory_order_acquire);
  return sum;
}

// --- bindings ------------------------------------------------------------

HRESULT engine_core::bind(HANDLE port, HANDLE handle) noexcept {
  const int fd = fd_of(handle);
  os::handle_kind kind{};
  if (fd < 0 || !os::query_handle(fd, kind)) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  std::lock_guard lock(bind_mutex_);
  if (port == nullptr) {
    std::uint16_t s;
    std::uint64_t st;
    if (default_port_ == nullptr || !decode_port(default_port_, s, st) ||
        (st & 3) != port_open_state)
      default_port_ = open_port_locked();
    if (default_port_ == nullptr) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
    port = default_port_;
  }
  std::uint16_t slot;
  std::uint64_t st;
  if (!decode_port(port, slot, st) || (st & 3) != port_open_state) return E_INVALIDARG;
  try {
    auto& entry = handles_.slot(fd);
    // Binding twice fails, as CreateIoCompletionPort does on Windows.
    if (entry.load(std::memory_order_relaxed) != 0)
      return HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER);
    binding b;
    b.port_slot = slot;
    b.poller = static_cast<std::uint16_t>(next_poller_.fetch_add(1, std::memory_order_relaxed) %
                                          pollers_.size());
    b.kind = kind;
    b.port_generation = static_cast<std::uint32_t>(st >> 2);
    entry.store(binding::pack(b), std::memory_order_release);  // pairs with lookup()
  } catch (const std::bad_alloc&) {
    return E_OUTOFMEMORY;
  }
  return S_OK;
}

HRESULT engine_core::unbind(HANDLE handle) noexcept {
  const int fd = fd_of(handle);
  std::lock_guard lock(bind_mutex_);
  if (handles_.lookup(fd) == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  handles_.slot(fd).store(0, std::memory_order_release);  // the chunk exists: no allocation
  return S_OK;
}

// --- thread limits -------------------------------------------------------

HRESULT engine_core::spawn_notifiers_locked(unsigned upto) noexcept {
  for (unsigned i = 0; i < upto; ++i) {
    notifier_slot& slot = notifiers_[i];
    if (slot.running.load(std::memory_order_acquire)) continue;
    if (slot.thread.joinable()) slot.thread.join();  // a retired thread: reuse its slot
    slot.running.store(true, std::memory_order_release);
    try {
      slot.thread = std::thread([this, i] { notifier_main(i); });
    } catch (const std::system_error&) {
      slot.running.store(false, std::memory_order_release);
      return E_OUTOFMEMORY;
    }
    if (i + 1 > spawned_.load(std::memory_order_relaxed))
      spawned_.store(i + 1, std::memory_order_release);  // thieves scan this many slots
  }
  return S_OK;
}

HRESULT engine_core::set_max_threads(DWORD n) noexcept {
  std::lock_guard lock(threads_mutex_);
  if (n == 0 || n < min_threads_.load(std::memory_order_relaxed) || n > max_notifiers)
    return E_INVALIDARG;
  max_threads_.store(n, std::memory_order_release);
  idle_.wake_all();  // threads above the new maximum see it and leave
  return spawn_notifiers_locked(n);
}

HRESULT engine_core::get_max_threads(DWORD* n) noexcept {
  if (n == nullptr) return E_POINTER;
  *n = max_threads_.load(std::memory_order_acquire);
  return S_OK;
}

HRESULT engine_core::set_min_threads(DWORD n) noexcept {
  std::lock_guard lock(threads_mutex_);
  if (n == 0 || n > max_threads_.load(std::memory_order_relaxed)) return E_INVALIDARG;
  min_threads_.store(n, std::memory_order_release);
  return S_OK;
}

HRESULT engine_core::get_min_threads(DWORD* n) noexcept {
  if (n == nullptr) return E_POINTER;
  *n = min_threads_.load(std::memory_order_acquire);
  return S_OK;
}

HRESULT engine_core::get_available_threads(DWORD* n) noexcept {
  if (n == nullptr) return E_POINTER;
  const std::uint32_t busy = counters().busy;
  const std::uint32_t max = max_threads_.load(std::memory_order_acquire);
  *n = busy >= max ? 0 : max - busy;
  return S_OK;
}

engine_counters engine_core::counters() const noexcept {
  engine_counters c{};
  c.pollers = static_cast<std::uint32_t>(pollers_.size());
  c.ring_setup = pollers_.empty() ? 0 : pollers_.front()->ring_setup();
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i) {
    c.notifiers += notifiers_[i].running.load(std::memory_order_relaxed) ? 1 : 0;
    c.busy += notifiers_[i].busy.load(std::memory_order_relaxed) ? 1 : 0;
  }
  c.parked = idle_.parked();
  c.wakeups = idle_.wakeups();
  return c;
}

// --- the runtime and overlapped areas ------------------------------------

HRESULT engine_core::set_clr(ICLRIoCompletionManager* clr) noexcept {
  if (clr == nullptr) return E_POINTER;
  ICLRIoCompletionManager* expected = nullptr;
  clr->AddRef();
  // acq_rel: the runtime's object is fully built before notifiers call it.
  if (!clr_.compare_exchange_strong(expected, clr, std::memory_order_acq_rel)) {
    clr->Release();
    return expected == clr ? S_OK : HOST_E_INVALIDOPERATION;  // set once
  }
  return S_OK;
}

HRESULT engine_core::initialize_overlapped(void* pv) noexcept {
  if (pv == nullptr) return E_POINTER;
  if (reinterpret_cast<std::uintptr_t>(pv) % alignof(op_state) != 0) return E_INVALIDARG;
  op_state* op = state_of(static_cast<OVERLAPPED*>(pv));
  // A recycled area still in flight must not be reset under the engine.
  if (op->phase.load(std::memory_order_acquire) == op_state::in_flight)
    return HRESULT_FROM_WIN32(ERROR_BUSY);
  new (op) op_state();
  return S_OK;
}

// --- operations ----------------------------------------------------------

HRESULT engine_core::check_overlapped(OVERLAPPED* ov) const noexcept {
  if (ov == nullptr) return E_POINTER;
  if (reinterpret_cast<std::uintptr_t>(ov) % alignof(op_state) != 0) return E_INVALIDARG;
  if (clr_.load(std::memory_order_acquire) == nullptr) return HOST_E_CLRNOTAVAILABLE;
  return S_OK;
}

HRESULT engine_core::admit(std::uint16_t slot, std::uint16_t shard, std::uint64_t open_state,
                           HRESULT port_gone, OVERLAPPED* ov) noexcept {
  pending_counter& pend = pending(slot, shard);
  // (5) pairs with (6) in close_port: count first, then look at the port.
  // Either Close sees our count and waits for us, or we see it closing.
  pend.value.fetch_add(1, std::memory_order_seq_cst);
  if (ports_[slot].state.load(std::memory_order_seq_cst) != open_state) {
    pend.value.fetch_sub(1, std::memory_order_release);
    return port_gone;
  }
  std::uint64_t expected = op_state::idle;
  // acquire: whatever the previous completion wrote is ours now.
  if (!state_of(ov)->phase.compare_exchange_strong(expected, op_state::in_flight,
                                                   std::memory_order_acquire)) {
    pend.value.fetch_sub(1, std::memory_order_release);
    return HRESULT_FROM_WIN32(expected == op_state::in_flight ? ERROR_BUSY
                                                              : ERROR_INVALID_PARAMETER);
  }
  return S_OK;
}

HRESULT engine_core::withdraw(std::uint16_t slot, std::uint16_t shard, OVERLAPPED* ov) noexcept {
  state_of(ov)->phase.store(op_state::idle, std::memory_order_release);
  pending(slot, shard).value.fetch_sub(1, std::memory_order_release);
  return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
}

HRESULT engine_core::submit(op_kind kind, HANDLE handle, void* buffer, std::uint32_t length,
                            std::uint64_t aux, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  const int fd = fd_of(handle);
  const std::uint64_t word = handles_.lookup(fd);
  if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  const binding b = binding::unpack(word);
  const std::uint64_t open_state = std::uint64_t{b.port_generation} << 2 | port_open_state;
  if (const HRESULT hr =
          admit(b.port_slot, b.poller, open_state, HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE), ov);
      FAILED(hr))
    return hr;
  op_state* op = state_of(ov);
  op->cancel_requested.store(0, std::memory_order_relaxed);
  op->kind = kind;
  op->handle = b.kind;
  op->port_slot = b.port_slot;
  op->shard = b.poller;
  op->fd = fd;
  op->length = length;
  op->buffer = buffer;
  op->aux = aux;
  poller& p = *pollers_[b.poller];
  for (int i = 0; !p.submit(reinterpret_cast<inbox_item>(ov)); ++i) {
    if (i == full_inbox_retries) return withdraw(b.port_slot, b.poller, ov);
    std::this_thread::yield();
  }
  return IOCM_E_IO_PENDING;
}

HRESULT engine_core::post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  std::uint16_t slot;
  std::uint64_t st;
  if (!decode_port(port, slot, st) || (st & 3) != port_open_state) return E_INVALIDARG;
  const auto shard = static_cast<std::uint16_t>(shards_ - 1);
  if (const HRESULT hr = admit(slot, shard, st, E_INVALIDARG, ov); FAILED(hr)) return hr;
  op_state* op = state_of(ov);
  op->kind = op_kind::post;
  op->port_slot = slot;
  op->shard = shard;
  const completion record{error, bytes, ov};
  for (int i = 0; !queue_.try_enqueue(record); ++i) {
    if (i == full_inbox_retries) return withdraw(slot, shard, ov);
    idle_.wake_one();
    std::this_thread::yield();
  }
  idle_.wake_one();
  return IOCM_E_IO_PENDING;
}

HRESULT engine_core::cancel(HANDLE handle, OVERLAPPED* ov) noexcept {
  const int fd = fd_of(handle);
  const std::uint64_t word = handles_.lookup(fd);
  if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  const binding b = binding::unpack(word);
  inbox_item item = cancel_fd_item(fd);
  if (ov != nullptr) {
    if (reinterpret_cast<std::uintptr_t>(ov) % alignof(op_state) != 0) return E_INVALIDARG;
    op_state* op = state_of(ov);
    if (op->phase.load(std::memory_order_acquire) != op_state::in_flight || op->fd != fd)
      return HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    // Release pairs with the poller's acquire load: an operation still in
    // the inbox is aborted without reaching the kernel.
    op->cancel_requested.store(1, std::memory_order_release);
    item = reinterpret_cast<inbox_item>(ov) | inbox_cancel_one;
  }
  poller& p = *pollers_[b.poller];
  for (int i = 0; !p.submit(item); ++i) {
    if (i == full_inbox_retries) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
    std::this_thread::yield();
  }
  return S_OK;
}

bool engine_core::on_notifier_thread() const noexcept { return tl_engine_ == this; }

}  // namespace iocm::detail
