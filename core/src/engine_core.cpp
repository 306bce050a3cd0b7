// The engine core (engine_core.h): its parts put together, and the
// operation entry points (submit, post, cancel, close).
#include "engine_core.h"

#include <algorithm>
#include <new>
#include <system_error>
#include <utility>

#include "backend.h"
#include "os.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr std::uint32_t max_transfer = 0x7FFFF000;  // Linux's MAX_RW_COUNT: 2 GiB - 4 KiB
// A notifier looks at another node's shard first once every steal_period
// dequeues, and takes at most steal_batch records from it at a time.
constexpr unsigned steal_period = 16;
constexpr std::size_t steal_batch = 8;

unsigned most_pollers_in_a_shard(const placement_plan& plan) {
  unsigned m = 1;
  for (const auto& s : plan.shards) m = std::max(m, s.pollers);
  return m;
}

}  // namespace

// --- building and tearing down -------------------------------------------

std::unique_ptr<engine_core> engine_core::build(const iocm_config* in, HRESULT* error,
                                                std::string* why) noexcept {
  engine_setup setup;
  std::string message;
  auto log = [&](std::uint32_t level, const std::string& text) {
    log_sink{setup.config.log, setup.config.log_context}.say(level, text.c_str());
  };
  try {
    *error = prepare_setup(in, setup, message);
    if (FAILED(*error)) {
      if (!message.empty()) log(IOCM_LOG_ERROR, message);
      if (why != nullptr) *why = std::move(message);
      return nullptr;
    }
    if (const std::string warning = unreachable_warning(setup.plan, setup.reach); !warning.empty())
      log(IOCM_LOG_WARNING, warning);
    if (!setup.notice.empty()) log(IOCM_LOG_INFO, setup.notice);
  } catch (const std::bad_alloc&) {
    *error = E_OUTOFMEMORY;
    return nullptr;
  }
  return create(setup, error);
}

engine_core::engine_core(const engine_setup& setup)
    : config_(setup.config),
      plan_(setup.plan),
      reach_(setup.reach),
      shard_memory_(shard_memory::for_plan(setup.plan, setup.reach)),
      queue_(
          setup.plan.shards.size(),
          queue_options{.capacity = setup.config.queue_capacity,
                        .producer_lanes = most_pollers_in_a_shard(setup.plan)},
          [this](std::size_t shard) { return shard_memory_[shard].get(); }, steal_period,
          steal_batch),
      ports_(setup.config.max_ports, setup.config.pollers + 1,
             poller_deliverer(setup.config.pollers)),
      notifiers_(queue_, ports_, plan_, reach_, delivery_, setup.config.min_threads,
                 setup.config.max_threads, setup.config.notifier_spin,
                 (setup.config.flags & IOCM_PUMPED) == 0),
      host_(queue_, notifiers_.idle(), (setup.config.flags & IOCM_PUMPED) == 0, ports_, delivery_,
            log_sink{setup.config.log, setup.config.log_context}),
      bindings_(ports_, pollers_, *this, log_sink{setup.config.log, setup.config.log_context}) {}

std::unique_ptr<engine_core> engine_core::create(const engine_setup& setup,
                                                 HRESULT* error) noexcept {
  std::unique_ptr<engine_core> core;
  try {
    core.reset(new engine_core(setup));
    const bool pumped = (setup.config.flags & IOCM_PUMPED) != 0;
    // Delivery where the completion lands (docs/ENGINE.md): each poller's
    // thread delivers the first record of a harvest, unless the host asked
    // for hand-off (or a ring setup that implies it).
    const bool inline_delivery = !pumped && (setup.config.flags & IOCM_HANDOFF) == 0;
    const poller_backend* backend = find_backend(setup.config.backend);
    if (backend == nullptr) {  // prepare_setup chose one
      *error = E_INVALIDARG;
      return nullptr;
    }
    for (unsigned i = 0; i < setup.config.pollers; ++i) {
      const auto& where = setup.plan.pollers[i];
      poller_setup ps;
      ps.host = &core->host_;
      ps.index = i;
      // A pumped engine's poller runs on the host's threads: nothing to pin.
      ps.cpu = !pumped && setup.reach.can_pin(where.cpu) ? where.cpu : -1;
      ps.ring_entries = setup.config.ring_entries;
      ps.ring_setup = setup.config.ring_setup;
      ps.fixed_files = (setup.config.flags & IOCM_FIXED_FILES) != 0;
      ps.inline_all = (setup.config.flags & IOCM_INLINE_ALL) != 0;
      ps.inbox_capacity = setup.config.inbox_capacity;
      ps.inbox_memory = core->shard_memory_[where.shard].get();
      ps.completions = core->queue_.make_producer(where.shard);
      if (inline_delivery) {
        ps.delivered = &core->ports_.deliverer(poller_deliverer(i));
        ps.helper = core->queue_.make_consumer(where.shard);
      }
      core->pollers_.push_back(backend->create(std::move(ps)));
      poller& p = *core->pollers_.back();
      if (const HRESULT hr = pumped ? p.start_inline() : p.start(); FAILED(hr)) {
        *error = hr;
        return nullptr;  // the destructor stops the pollers that started
      }
    }
    if (pumped)
      core->pump_ = std::make_unique<detail::pump>(
          *core->pollers_.front(), core->queue_, core->delivery_,
          core->ports_.deliverer(pump_deliverer), setup.config.queue_capacity);
    if (const HRESULT hr = core->notifiers_.start(); FAILED(hr)) {
      *error = hr;
      return nullptr;
    }
    if (inline_delivery) {
      core->monitor_ = std::make_unique<ring_monitor>(core->pollers_);
      core->monitor_->start();
    }
  } catch (const std::bad_alloc&) {
    *error = E_OUTOFMEMORY;
    return nullptr;
  } catch (const std::system_error&) {  // a thread could not be started
    *error = E_OUTOFMEMORY;
    return nullptr;
  } catch (const std::exception&) {  // a limit prepare_setup() should have caught: refuse
    *error = E_INVALIDARG;
    return nullptr;
  }
  *error = S_OK;
  return core;
}

engine_core::~engine_core() {
  // Close every port still open: in-flight operations complete (aborted)
  // while notifiers still run.
  ports_.for_each_open([this](HANDLE port) { close_port(port); });
  // A pumped engine's poller finishes on this thread, as the pump's owner;
  // a Pump still running elsewhere (the last Release came from inside its
  // OnComplete) ends first.
  if (pump_ != nullptr)
    while (!pump_->acquire()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  // The monitor drives the rings of pollers stuck in callbacks: it stops
  // before they do (Close has waited for every callback already).
  if (monitor_ != nullptr) monitor_->stop();
  for (auto& p : pollers_) p->stop_and_join();
  if (pump_ != nullptr) pump_->release();
  notifiers_.stop();
}

std::string engine_core::describe() const {
  std::string out = describe_plan(plan_, reach_, notifiers_.max_threads());
  for (std::size_t s = 0; s < shard_memory_.size(); ++s) {
    const int node = shard_memory_[s]->found_on_node();
    out += "shard " + std::to_string(s) + " memory found on node " +
           (node < 0 ? std::string("(unknown)") : std::to_string(node)) + "\n";
  }
  // Where the threads really are: each read its own affinity mask once
  // started (a notifier that has not run yet shows as not pinned).
  for (std::size_t i = 0; i < pollers_.size(); ++i)
    out += "poller " + std::to_string(i) + " found " + describe_pinning(pollers_[i]->pinned_cpu()) +
           "\n";
  return out + notifiers_.describe();
}

engine_counters engine_core::counters() const noexcept {
  engine_counters c{};
  c.pollers = static_cast<std::uint32_t>(pollers_.size());
  c.shards = static_cast<std::uint32_t>(queue_.shard_count());
  c.backend = pollers_.empty() ? config_.backend : pollers_.front()->backend();
  c.ring_setup = pollers_.empty() ? 0 : pollers_.front()->ring_setup();
  c.notifiers = notifiers_.alive();
  c.busy = notifiers_.busy() + pollers_in_callback();
  c.parked = notifiers_.parked();
  c.wakeups = notifiers_.wakeups();
  return c;
}

void engine_core::metrics(iocm_metrics& m) const noexcept {
  const engine_counters c = counters();
  m.pollers = c.pollers;
  m.notifiers = c.notifiers;
  m.parked = c.parked;
  m.wakeups_sent = c.wakeups;
  ports_.add_admitted(m.accepted);
  for (const auto& p : pollers_) {
    const poller_metrics& pm = p->metrics();
    for (std::size_t b = 0; b < IOCM_HARVEST_BUCKETS; ++b) {
      m.harvest_sizes[b] += pm.harvest_sizes[b].read();
      m.harvests += pm.harvest_sizes[b].read();
    }
    m.queue_high_water = std::max(m.queue_high_water, pm.queue_high_water.read());
    m.wakeups_avoided += pm.wakeups_avoided.read();
    for (std::size_t r = 0; r < IOCM_REFUSAL_KINDS; ++r)
      m.kernel_refusals[r] += pm.refusals[r].read();
    m.ring_takeovers += pm.takeovers.read();
  }
  // Who delivered: notifier rows, the pump's, then the pollers' own.
  for (unsigned id = 0; id < poller_deliverer(static_cast<unsigned>(pollers_.size())); ++id) {
    const port_table::delivered_row* row = ports_.row_if_made(id);
    if (row == nullptr) continue;
    const std::uint64_t n = row->add_totals(m.completed);
    if (id < pump_deliverer)
      m.delivered_by_notifiers += n;
    else if (id == pump_deliverer)
      m.delivered_by_pump += n;
    else
      m.delivered_inline += n;
  }
}

// --- ports -----------------------------------------------------------------

HRESULT engine_core::create_port(HANDLE* port) noexcept {
  if (port == nullptr) return E_POINTER;
  std::lock_guard lock(ports_.mutex());
  *port = ports_.open_locked();
  return *port != nullptr ? S_OK : HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
}

HRESULT engine_core::close_port(HANDLE port) noexcept {
  std::uint16_t slot;
  std::uint64_t st;
  {
    std::lock_guard lock(ports_.mutex());
    if (const HRESULT hr = ports_.begin_close_locked(port, slot, st); FAILED(hr)) return hr;
    bindings_.forget_default_locked(port);
  }
  // Unbind the port's handles and cancel what the kernel holds for them.
  std::vector<int> made_nonblocking;  // restored once nothing on them is left
  bindings_.unbind_port(slot, made_nonblocking);
  // Wait until every accepted operation of the port has been delivered. The
  // record this thread is delivering right now (Close called from inside
  // OnComplete) cannot finish before we return; count it as done. Only a
  // record of this engine: a callback of another engine may close our port.
  const bool inside_own = delivery_.inside_record_of(slot);
  const std::int64_t self = inside_own ? 1 : 0;
  wait_delivering([&] { return ports_.pending_total(slot) <= self; });
  if (inside_own) delivery_.settle_current();
  std::lock_guard lock(ports_.mutex());
  for (const int fd : made_nonblocking) bindings_.restore_blocking_locked(fd);
  ports_.end_close_locked(slot, st);
  return S_OK;
}

// --- operations ----------------------------------------------------------

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

HRESULT engine_core::check_overlapped(OVERLAPPED* ov) const noexcept {
  if (ov == nullptr) return E_POINTER;
  if (reinterpret_cast<std::uintptr_t>(ov) % alignof(op_state) != 0) return E_INVALIDARG;
  if (!delivery_.has_clr()) return HOST_E_CLRNOTAVAILABLE;
  return S_OK;
}

HRESULT engine_core::submit(op_kind kind, HANDLE handle, void* buffer, std::uint32_t length,
                            std::uint64_t aux, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  const int fd = fd_of(handle);
  const std::uint64_t word = bindings_.lookup(fd);
  if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  const binding b = binding::unpack(word);
  if (kind == op_kind::read || kind == op_kind::write) {
    if (b.kind == os::handle_kind::file) {
      // Offsets with the top bit set are negative to Linux. One of them has
      // a meaning on Windows, and the same here: a write at
      // 0xFFFFFFFF:0xFFFFFFFF goes to the end of the file. The others are
      // refused, as Windows refuses them, on both backends alike (io_uring
      // would otherwise take -1 as "the descriptor's own position").
      if ((aux >> 63) != 0 && !(kind == op_kind::write && aux == append_offset))
        return HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER);
    } else if (b.kind == os::handle_kind::pipe || b.kind == os::handle_kind::socket) {
      aux = 0;  // no position: the offset is ignored
    }
  }
  // Linux moves at most max_transfer bytes per call, and io_uring refuses a
  // longer recv or send outright: take such a length as the most one call
  // can move, so that both backends answer alike (a short transfer).
  if (length > max_transfer) length = max_transfer;
  // The handle's completion modes (SetCompletionModes): one test on the
  // way of a handle that has none.
  if (binding::has_modes(word)) {
    const moded m = apply_modes(word, fd, kind, buffer, length, aux, ov);
    if (m.hr != IOCM_E_IO_PENDING) return m.hr;
    kind = m.kind;
    aux = m.aux;
  }
  const std::uint64_t open_state = std::uint64_t{b.port_generation} << 2 | port_table::open_state;
  op_state* op = state_of(ov);
  if (const HRESULT hr = ports_.admit(b.port_slot, b.poller, kind, open_state,
                                      HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE), *op);
      FAILED(hr))
    return hr;
  op->kind = kind;
  op->handle = b.kind;
  op->port_slot = b.port_slot;
  op->counter = b.poller;
  op->fd = fd;
  op->length = length;
  op->buffer = buffer;
  op->aux = aux;
  poller& p = *pollers_[b.poller];
  const auto item = reinterpret_cast<inbox_item>(ov);
  // From inside an OnComplete that p's own thread delivers: straight into
  // its ring (no inbox, no wake-up), as a thread-per-core loop would.
  if (poller::home_in_callback() == &p && p.submit_direct(item)) return IOCM_E_IO_PENDING;
  if (!queue_request(p, item)) return ports_.withdraw(b.port_slot, b.poller, op->kind, *op);
  return IOCM_E_IO_PENDING;
}

engine_core::moded engine_core::apply_modes(std::uint64_t word, int fd, op_kind kind, void* buffer,
                                            std::uint32_t length, std::uint64_t aux,
                                            OVERLAPPED* ov) noexcept {
  const binding b = binding::unpack(word);
  if (b.receive_ahead && (kind == op_kind::recv || kind == op_kind::read)) {
    // Bytes may wait in the poller already: every receive goes there, in
    // order (a Read too, or it would overtake them).
    return {IOCM_E_IO_PENDING, op_kind::recv, recv_ahead};
  }
  if (b.accept_ahead && kind == op_kind::accept)
    return {IOCM_E_IO_PENDING, kind, aux | accept_ahead};
  if (b.skip_on_success && kind != op_kind::nop && kind != op_kind::accept &&
      kind != op_kind::connect)
    return {try_at_once(kind, b.kind, b.port_slot, fd, buffer, length, aux, ov), kind, aux};
  return {IOCM_E_IO_PENDING, kind, aux};
}

HRESULT engine_core::try_at_once(op_kind kind, os::handle_kind handle, std::uint16_t port_slot,
                                 int fd, void* buffer, std::uint32_t length, std::uint64_t aux,
                                 OVERLAPPED* ov) noexcept {
  if (handle == os::handle_kind::other) return IOCM_E_IO_PENDING;  // nothing to try it with
  // As a submission would be: refused on a closing port, and the OVERLAPPED
  // is ours (in flight) while the transfer runs.
  if (!ports_.is_open(port_slot)) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  op_state* op = state_of(ov);
  if (const HRESULT claimed = op->claim(); FAILED(claimed)) return claimed;
  const bool out = kind == op_kind::write || kind == op_kind::send;
  const std::int32_t res = os::transfer_now(fd, handle, out, buffer, length, aux);
  if (os::would_wait(res)) {
    op->phase.store(op_state::idle, std::memory_order_release);
    return IOCM_E_IO_PENDING;  // the poller takes it
  }
  // The record finish() makes, as the poller would have (end of file,
  // orderly close), given back here instead of delivered.
  op->kind = kind;
  op->handle = handle;
  op->length = length;
  const completion c = finish(ov, res);
  ov->Internal = c.error;
  ov->InternalHigh = c.bytes;
  op->phase.store(op_state::idle, std::memory_order_release);
  return c.error == 0 ? S_OK : HRESULT_FROM_WIN32(c.error);
}

std::uint32_t engine_core::pollers_in_callback() const noexcept {
  std::uint32_t n = 0;
  for (const auto& p : pollers_) n += p->in_callback() ? 1 : 0;
  return n;
}

bool engine_core::queue_request_waiting(poller& p, inbox_item item) noexcept {
  for (room_wait wait;;) {
    wait_for_inbox();
    if (p.submit(item)) return true;
    if (!wait.again()) return false;
  }
}

bool engine_core::post_waiting(std::size_t shard, const completion& record) noexcept {
  for (room_wait wait;;) {
    // A full queue drains only by delivery: in a pumped engine, only if
    // another thread is pumping now.
    if (!wait.again() || (pump_ != nullptr && !pump_->owned_elsewhere())) return false;
    notifiers_.idle().wake_one(shard);
    std::this_thread::yield();
    if (queue_.try_enqueue_bulk(shard, &record, 1) == 1) return true;
  }
}

HRESULT engine_core::post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  std::uint16_t slot;
  std::uint64_t st;
  if (!ports_.decode_open(port, slot, st)) return E_INVALIDARG;
  const std::uint16_t counter = ports_.post_counter();
  op_state* op = state_of(ov);
  if (const HRESULT hr = ports_.admit(slot, counter, op_kind::post, st, E_INVALIDARG, *op);
      FAILED(hr))
    return hr;
  op->kind = op_kind::post;
  op->port_slot = slot;
  op->counter = counter;
  const completion record{error, bytes, ov};
  // Into the shard of the node the caller runs on: its notifiers are the
  // ones whose caches are nearest.
  const std::size_t shard = queue_.shard_count() == 1 ? 0 : plan_.shard_for_cpu(os::current_cpu());
  if (queue_.try_enqueue_bulk(shard, &record, 1) != 1 && !post_waiting(shard, record))
    return ports_.withdraw(slot, counter, op_kind::post, *op);
  if (pump_ != nullptr)
    pump_->nudge();  // a pump waiting in the kernel delivers it
  else
    notifiers_.idle().wake_one(shard);
  return IOCM_E_IO_PENDING;
}

HRESULT engine_core::cancel(HANDLE handle, OVERLAPPED* ov) noexcept {
  const int fd = fd_of(handle);
  const std::uint64_t word = bindings_.lookup(fd);
  if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
  if (reinterpret_cast<std::uintptr_t>(ov) % alignof(op_state) != 0) return E_INVALIDARG;
  const binding b = binding::unpack(word);
  // As CancelIoEx: the OVERLAPPED is only a key. It may have completed and
  // been freed or reused already; only the poller knows what it holds, so
  // it answers (microseconds). Its operation, if the caller submitted it
  // before calling us, is ahead of this request in the inbox.
  poller_request request;
  request.fd = fd;
  request.key = ov;
  const inbox_item item = reinterpret_cast<inbox_item>(&request) |
                          (ov != nullptr ? inbox_cancel_one : inbox_cancel_all);
  if (!queue_request(*pollers_[b.poller], item))
    return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
  // From inside OnComplete this thread delivers meanwhile.
  wait_delivering([&] { return request.answered(); });
  return request.found != 0 ? S_OK : HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
}

void engine_core::wait_for_inbox() noexcept {
  if (pump_ != nullptr && pump_->move_inbox()) return;
  std::this_thread::yield();
}

bool engine_core::help_deliver() noexcept {
  // A pumped engine's waits deliver on this thread unless another pumps.
  if (pump_ != nullptr) return pump_->help();
  // A poller's thread waiting inside its own inline OnComplete drives its
  // ring and delivers, nested, as a notifier would.
  if (poller* p = poller::home_in_callback(); p != nullptr && delivery_.on_delivering_thread())
    return p->help_from_callback();
  return notifiers_.help_deliver();
}

HRESULT engine_core::pump(DWORD timeout_ms, DWORD* delivered) noexcept {
  if (pump_ == nullptr) {
    if (delivered != nullptr) *delivered = 0;
    return HRESULT_FROM_WIN32(ERROR_INVALID_FUNCTION);
  }
  return pump_->run(timeout_ms, delivered);
}

}  // namespace iocm::detail
