// The engine core: ports, bindings, submission and thread limits. Notifier
// threads and Close's wait live in notifiers.cpp.
#include "engine_core.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string_view>
#include <system_error>
#include <utility>

#include "iocm/detail/backoff.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr unsigned max_pollers = 256;
constexpr unsigned max_ports_limit = 1024;
constexpr std::uint32_t max_ring_entries = 32768;
constexpr std::uint32_t max_queue_capacity = 1u << 24;
constexpr int full_inbox_retries = 1 << 14;         // yields before a submission is refused
constexpr std::uint32_t max_transfer = 0x7FFFF000;  // Linux's MAX_RW_COUNT: 2 GiB - 4 KiB
// A notifier looks at another node's shard first once every steal_period
// dequeues, and takes at most steal_batch records from it at a time.
constexpr unsigned steal_period = 16;
constexpr std::size_t steal_batch = 8;

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

namespace {

std::string quoted(const char* s) { return std::string("\"") + s + "\""; }

bool parse_count(const char* s, unsigned lo, unsigned hi, std::uint32_t& out) {
  const std::string_view v(s);
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < lo || n > hi) return false;
  out = n;
  return true;
}

/// Sets `field` from environment variable `name` when it is set: its value
/// must be one of the names in `choices`. False, with *why naming the
/// value, when it is not.
bool choose_from_env(const char* name,
                     std::initializer_list<std::pair<std::string_view, std::uint32_t>> choices,
                     std::uint32_t& field, std::string& why) {
  const char* env = std::getenv(name);
  if (env == nullptr) return true;
  std::string names;
  for (const auto& [text, value] : choices) {
    if (text == env) {
      field = value;
      return true;
    }
    names += (names.empty() ? "\"" : ", \"") + std::string(text) + "\"";
  }
  why = std::string(name) + "=" + quoted(env) + " is not one of " + names;
  return false;
}

}  // namespace

HRESULT engine_core::prepare(const iocm_config* in, engine_setup& out, std::string& why) noexcept
    try {
  iocm_config& c = out.config;
  iocm_config_init(&c);
  if (in != nullptr) {
    if (in->struct_size == IOCM_CONFIG_SIZE_V1) {
      std::memcpy(&c, in, IOCM_CONFIG_SIZE_V1);  // the fields after it keep their defaults
      c.struct_size = sizeof(iocm_config);
    } else if (in->struct_size == sizeof(iocm_config)) {
      c = *in;
    } else {
      why = "struct_size " + std::to_string(in->struct_size) +
            " is not a known iocm_config layout (fill the config with iocm_config_init)";
      return E_INVALIDARG;
    }
  }
  auto bad = [&](std::string message) {
    why = std::move(message);
    return E_INVALIDARG;
  };
  if (!pow2_in(c.ring_entries, 2, max_ring_entries))
    return bad("ring_entries " + std::to_string(c.ring_entries) +
               " is not a power of two in 2..32768");
  if (!pow2_in(c.queue_capacity, 64, max_queue_capacity))
    return bad("queue_capacity " + std::to_string(c.queue_capacity) +
               " is not a power of two in 64..16777216");
  if (!pow2_in(c.inbox_capacity, 64, max_queue_capacity))
    return bad("inbox_capacity " + std::to_string(c.inbox_capacity) +
               " is not a power of two in 64..16777216");
  if (c.max_ports == 0 || c.max_ports > max_ports_limit)
    return bad("max_ports " + std::to_string(c.max_ports) + " is not in 1..1024");
  if (c.ring_setup > IOCM_RING_PLAIN)
    return bad("ring_setup " + std::to_string(c.ring_setup) + " is not an iocm_ring_setup value");
  if ((c.flags & ~std::uint32_t{IOCM_NO_PINNING | IOCM_PUMPED}) != 0)
    return bad("flags " + std::to_string(c.flags) + " has bits iocm does not know");
  const bool pumped = (c.flags & IOCM_PUMPED) != 0;
  if (pumped) {
    // One poller, run by whichever thread pumps: a ring tied to the thread
    // that made it (SINGLE_ISSUER) or running its work only when that
    // thread enters the kernel (COOP_TASKRUN) would not do.
    if (c.pollers > 1)
      return bad("pollers " + std::to_string(c.pollers) + " with IOCM_PUMPED (which runs one)");
    if (c.ring_setup == IOCM_RING_DEFER_TASKRUN || c.ring_setup == IOCM_RING_COOP_TASKRUN)
      return bad("ring_setup " + std::to_string(c.ring_setup) +
                 " with IOCM_PUMPED (any thread may pump: IOCM_RING_PROBE or IOCM_RING_PLAIN)");
    c.pollers = 1;
    c.ring_setup = IOCM_RING_PLAIN;
  }
  if (c.backend > IOCM_BACKEND_EPOLL)
    return bad("backend " + std::to_string(c.backend) + " is not an iocm_backend value");
  if (c.backend == IOCM_BACKEND_AUTO && !choose_from_env("IOCM_BACKEND",
                                                         {{"auto", IOCM_BACKEND_AUTO},
                                                          {"uring", IOCM_BACKEND_URING},
                                                          {"epoll", IOCM_BACKEND_EPOLL}},
                                                         c.backend, why))
    return E_INVALIDARG;
  if (c.backend == IOCM_BACKEND_AUTO) {
    std::string why_not;
    if (os::uring_available(why_not)) {
      c.backend = IOCM_BACKEND_URING;
    } else {
      c.backend = IOCM_BACKEND_EPOLL;
      out.notice = "using the epoll backend: " + why_not;
    }
  }

  // Placement: the config's fields first, then the environment.
  placement_request request;
  const char* cpus = c.cpus;
  request.cpus_origin = cpus != nullptr ? "cpus=" + quoted(cpus) : "";
  if (cpus == nullptr && (cpus = std::getenv("IOCM_CPUS")) != nullptr)
    request.cpus_origin = "IOCM_CPUS=" + quoted(cpus);
  if (cpus != nullptr) {
    std::string what;
    if (!parse_cpu_list(cpus, request.cpus, what)) return bad(request.cpus_origin + " " + what);
  }
  if (c.pollers > max_pollers)
    return bad("pollers " + std::to_string(c.pollers) + " is above the limit of 256");
  if (const char* env = std::getenv("IOCM_POLLERS"); c.pollers == 0 && env != nullptr) {
    if (!parse_count(env, 1, max_pollers, c.pollers))
      return bad("IOCM_POLLERS=" + quoted(env) + " is not a poller count in 1..256");
  }
  request.pollers = c.pollers;
  if (c.placement > IOCM_PLACEMENT_SPREAD)
    return bad("placement " + std::to_string(c.placement) + " is not an iocm_placement value");
  if (c.placement == IOCM_PLACEMENT_DEFAULT &&
      !choose_from_env("IOCM_PLACEMENT",
                       {{"compact", IOCM_PLACEMENT_COMPACT}, {"spread", IOCM_PLACEMENT_SPREAD}},
                       c.placement, why))
    return E_INVALIDARG;
  if (c.placement == IOCM_PLACEMENT_DEFAULT) c.placement = IOCM_PLACEMENT_SPREAD;
  request.policy = c.placement;

  const char* spec = c.topology;
  std::string spec_origin = spec != nullptr ? "topology=" + quoted(spec) : "";
  if (spec == nullptr && (spec = std::getenv("IOCM_TOPOLOGY")) != nullptr)
    spec_origin = "IOCM_TOPOLOGY=" + quoted(spec);
  topology topo;
  if (std::string what; !os::load_topology(spec, topo, what))
    return bad(spec_origin.empty() ? "this machine's topology " + what : spec_origin + " " + what);
  if (std::string what; !make_plan(topo, request, out.plan, what)) return bad(what);

  c.pollers = static_cast<std::uint32_t>(out.plan.pollers.size());
  const auto usable = static_cast<unsigned>(out.plan.usable.size());
  if (c.min_threads == 0) c.min_threads = 1;
  if (c.max_threads == 0)
    c.max_threads = std::max(c.min_threads, std::min(2 * usable, max_notifiers));
  if (c.max_threads > max_notifiers)
    return bad("max_threads " + std::to_string(c.max_threads) + " is above the limit of 1024");
  if (c.min_threads > c.max_threads)
    return bad("min_threads " + std::to_string(c.min_threads) + " is above max_threads " +
               std::to_string(c.max_threads));

  // What this machine lets us apply.
  int real[1024];
  const unsigned n = std::min(1024u, os::usable_cpus(real, 1024));
  out.reach.cpus.assign(real, real + n);
  std::sort(out.reach.cpus.begin(), out.reach.cpus.end());
  out.reach.nodes = os::bindable_nodes();
  out.reach.pinning = (c.flags & IOCM_NO_PINNING) == 0;
  // The strings are read during creation only.
  c.cpus = nullptr;
  c.topology = nullptr;
  return S_OK;
} catch (const std::bad_alloc&) {
  return E_OUTOFMEMORY;
}

namespace {

/// Through the config's log callback, or one line on stderr.
void say(const iocm_config& config, std::uint32_t level, const char* text) noexcept {
  if (config.log != nullptr) {
    config.log(config.log_context, level, text);
    return;
  }
  std::fprintf(stderr, "iocm: %s: %s\n",
               level == IOCM_LOG_ERROR     ? "error"
               : level == IOCM_LOG_WARNING ? "warning"
                                           : "info",
               text);
}

}  // namespace

void engine_core::log(std::uint32_t level, const char* text) const noexcept {
  say(config_, level, text);
}

std::unique_ptr<engine_core> engine_core::build(const iocm_config* in, HRESULT* error,
                                                std::string* why) noexcept {
  engine_setup setup;
  std::string message;
  auto log = [&](std::uint32_t level, const std::string& text) {
    say(setup.config, level, text.c_str());
  };
  try {
    *error = prepare(in, setup, message);
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

/// A shard's memory: on its node when that can be applied, and the address
/// of its first block, so describe() can say where it really landed.
struct engine_core::shard_memory final : std::pmr::memory_resource {
  std::unique_ptr<std::pmr::memory_resource> node;  // null: the default resource
  void* first = nullptr;

  std::pmr::memory_resource& upstream() const {
    return node ? *node : *std::pmr::get_default_resource();
  }
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = upstream().allocate(bytes, alignment);
    if (first == nullptr) first = p;
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    upstream().deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

namespace {

unsigned most_pollers_in_a_shard(const placement_plan& plan) {
  unsigned m = 1;
  for (const auto& s : plan.shards) m = std::max(m, s.pollers);
  return m;
}

}  // namespace

engine_core::engine_core(const engine_setup& setup)
    : config_(setup.config),
      plan_(setup.plan),
      reach_(setup.reach),
      counters_per_port_(setup.config.pollers + 1),
      shard_memory_([&] {
        std::vector<std::unique_ptr<shard_memory>> v;
        for (const auto& s : setup.plan.shards) {
          v.push_back(std::make_unique<shard_memory>());
          if (setup.reach.can_bind(s.node_os)) v.back()->node = os::node_memory(s.node_os);
        }
        return v;
      }()),
      queue_(
          setup.plan.shards.size(),
          queue_options{setup.config.queue_capacity, most_pollers_in_a_shard(setup.plan), 64,
                        nullptr, 0},
          [this](std::size_t shard) { return shard_memory_[shard].get(); }, steal_period,
          steal_batch),
      ports_(new port_entry[setup.config.max_ports]),
      pending_(new pending_counter[std::size_t{setup.config.max_ports} * counters_per_port_]),
      min_threads_(setup.config.min_threads),
      max_threads_(setup.config.max_threads),
      notifiers_(new notifier_slot[max_notifiers]),
      idle_(max_notifiers, setup.plan.shards.size()),
      pumped_((setup.config.flags & IOCM_PUMPED) != 0) {}

std::unique_ptr<engine_core> engine_core::create(const engine_setup& setup,
                                                 HRESULT* error) noexcept {
  std::unique_ptr<engine_core> core;
  try {
    core.reset(new engine_core(setup));
    for (unsigned i = 0; i < setup.config.pollers; ++i) {
      const auto& where = setup.plan.pollers[i];
      poller_setup ps;
      ps.core = core.get();
      ps.index = i;
      // A pumped engine's poller runs on the host's threads: nothing to pin.
      ps.cpu = !core->pumped_ && setup.reach.can_pin(where.cpu) ? where.cpu : -1;
      ps.ring_entries = setup.config.ring_entries;
      ps.ring_setup = setup.config.ring_setup;
      ps.backend = setup.config.backend;
      ps.inbox_capacity = setup.config.inbox_capacity;
      ps.inbox_memory = core->shard_memory_[where.shard].get();
      ps.completions = core->queue_.make_producer(where.shard);
      core->pollers_.push_back(make_poller(std::move(ps)));
      poller& p = *core->pollers_.back();
      if (const HRESULT hr = core->pumped_ ? p.start_inline() : p.start(); FAILED(hr)) {
        *error = hr;
        return nullptr;  // the destructor stops the pollers that started
      }
    }
    if (core->pumped_) core->pump_token_ = core->queue_.make_consumer(0);
    std::lock_guard lock(core->threads_mutex_);
    if (const HRESULT hr = core->spawn_notifiers_locked(setup.config.max_threads); FAILED(hr)) {
      *error = hr;
      return nullptr;
    }
  } catch (const std::bad_alloc&) {
    *error = E_OUTOFMEMORY;
    return nullptr;
  } catch (const std::system_error&) {  // a thread could not be started
    *error = E_OUTOFMEMORY;
    return nullptr;
  } catch (const std::exception&) {  // a limit prepare() should have caught: refuse, never abort
    *error = E_INVALIDARG;
    return nullptr;
  }
  *error = S_OK;
  return core;
}

std::string engine_core::describe() const {
  std::string out = describe_plan(plan_, reach_, max_threads_.load(std::memory_order_acquire));
  for (std::size_t s = 0; s < shard_memory_.size(); ++s) {
    const int node =
        shard_memory_[s]->first != nullptr ? os::node_of_address(shard_memory_[s]->first) : -1;
    out += "shard " + std::to_string(s) + " memory found on node " +
           (node < 0 ? std::string("(unknown)") : std::to_string(node)) + "\n";
  }
  // Where the threads really are: each read its own affinity mask once
  // started (a notifier that has not run yet shows as not pinned).
  auto where = [](int cpu) {
    return cpu >= 0    ? "pinned to CPU " + std::to_string(cpu)
           : cpu == -1 ? std::string("not pinned")
                       : std::string("not started yet");
  };
  for (std::size_t i = 0; i < pollers_.size(); ++i)
    out += "poller " + std::to_string(i) + " found " + where(pollers_[i]->pinned_cpu()) + "\n";
  for (std::uint32_t i = 0; i < spawned_.load(std::memory_order_acquire); ++i)
    if (notifiers_[i].running.load(std::memory_order_acquire))
      out += "notifier " + std::to_string(i) + " found " +
             where(notifiers_[i].cpu.load(std::memory_order_relaxed)) + "\n";
  return out;
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
  // A pumped engine's poller finishes on this thread, as the pump's owner;
  // a Pump still running elsewhere (the last Release came from inside its
  // OnComplete) ends first.
  if (pumped_)
    while (!acquire_pump()) std::this_thread::sleep_for(std::chrono::microseconds(50));
  for (auto& p : pollers_) p->stop_and_join();
  if (pumped_) release_pump();
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
  for (unsigned s = 0; s < counters_per_port_; ++s)
    sum += pending_[slot * counters_per_port_ + s].value.load(std::memory_order_acquire);
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
    // epoll: the descriptor becomes non-blocking and joins the poller's
    // epoll set here, before any operation on it can be submitted.
    if (const HRESULT hr = pollers_[b.poller]->prepare_handle(fd, b); FAILED(hr)) return hr;
    entry.store(binding::pack(b), std::memory_order_release);  // pairs with lookup()
  } catch (const std::bad_alloc&) {
    return E_OUTOFMEMORY;
  }
  return S_OK;
}

HRESULT engine_core::unbind(HANDLE handle) noexcept {
  const int fd = fd_of(handle);
  poller_request request;
  request.fd = fd;
  binding b;
  for (int i = 0;; ++i) {
    {
      std::lock_guard lock(bind_mutex_);
      const std::uint64_t word = handles_.lookup(fd);
      if (word == 0) return HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
      auto& entry = handles_.slot(fd);            // the chunk exists: no allocation
      entry.store(0, std::memory_order_release);  // no new operation from here on
      b = binding::unpack(word);
      poller& p = *pollers_[b.poller];
      // Queued after every operation already accepted on fd: the poller
      // takes them first.
      if (p.submit(reinterpret_cast<inbox_item>(&request) | inbox_unbind)) {
        p.forget_handle(fd, b);
        break;
      }
      entry.store(word, std::memory_order_release);  // nothing was cancelled: still bound
    }
    // The inbox is full: wait for room without the bind lock, which a
    // pump's OnComplete may want (a pumped engine's pump empties it).
    if (i == full_inbox_retries) return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
    wait_for_inbox();
  }
  // Wait until the kernel has the cancel: it finds the descriptor by number
  // when it gets it, so the host must not close fd before. Microseconds;
  // from inside OnComplete this thread delivers meanwhile (the poller may
  // wait for room in the queue).
  wait_delivering([&] { return request.answered(); });
  if (b.made_nonblocking) {
    std::lock_guard lock(bind_mutex_);
    restore_blocking_locked(fd);
  }
  return S_OK;
}

void engine_core::restore_blocking_locked(int fd) noexcept {
  const std::uint64_t word = handles_.lookup(fd);
  if (word == 0) {
    os::clear_nonblocking(fd);  // blocking again, as the host gave it
    return;
  }
  // Bound anew meanwhile (it found O_NONBLOCK set): its own Unbind restores.
  binding b = binding::unpack(word);
  b.made_nonblocking = true;
  handles_.slot(fd).store(binding::pack(b), std::memory_order_release);
}

// --- thread limits -------------------------------------------------------

HRESULT engine_core::spawn_notifiers_locked(unsigned upto) noexcept {
  if (pumped_) return S_OK;  // the limits are kept, and govern no thread
  for (unsigned i = 0; i < upto; ++i) {
    notifier_slot& slot = notifiers_[i];
    if (slot.running.load(std::memory_order_acquire)) continue;
    if (slot.thread.joinable()) slot.thread.join();  // a retired thread: reuse its slot
    try {
      // Made here, not on the new thread: an allocation that fails must be
      // an HRESULT for the caller, not an exception on a thread of ours.
      slot.token = queue_.make_consumer(plan_.notifier_shard(i));
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
  c.shards = static_cast<std::uint32_t>(queue_.shard_count());
  c.backend = pollers_.empty() ? config_.backend : pollers_.front()->backend();
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

HRESULT engine_core::admit(std::uint16_t slot, std::uint16_t counter, std::uint64_t open_state,
                           HRESULT port_gone, OVERLAPPED* ov) noexcept {
  pending_counter& pend = pending(slot, counter);
  // (E1) pairs with (E2) in close_port: count first, then look at the port.
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

HRESULT engine_core::withdraw(std::uint16_t slot, std::uint16_t counter, OVERLAPPED* ov) noexcept {
  state_of(ov)->phase.store(op_state::idle, std::memory_order_release);
  pending(slot, counter).value.fetch_sub(1, std::memory_order_release);
  return HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);
}

HRESULT engine_core::submit(op_kind kind, HANDLE handle, void* buffer, std::uint32_t length,
                            std::uint64_t aux, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  const int fd = fd_of(handle);
  const std::uint64_t word = handles_.lookup(fd);
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
  const std::uint64_t open_state = std::uint64_t{b.port_generation} << 2 | port_open_state;
  if (const HRESULT hr =
          admit(b.port_slot, b.poller, open_state, HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE), ov);
      FAILED(hr))
    return hr;
  op_state* op = state_of(ov);
  op->kind = kind;
  // Linux moves at most max_transfer bytes per call, and io_uring refuses a
  // longer recv or send outright: take such a length as the most one call
  // can move, so that both backends answer alike (a short transfer).
  if (length > max_transfer) length = max_transfer;
  op->handle = b.kind;
  op->port_slot = b.port_slot;
  op->counter = b.poller;
  op->fd = fd;
  op->length = length;
  op->buffer = buffer;
  op->aux = aux;
  if (!queue_request(*pollers_[b.poller], reinterpret_cast<inbox_item>(ov)))
    return withdraw(b.port_slot, b.poller, ov);
  return IOCM_E_IO_PENDING;
}

bool engine_core::queue_request_waiting(poller& p, inbox_item item) noexcept {
  for (int i = 0;; ++i) {
    wait_for_inbox();
    if (p.submit(item)) return true;
    if (i == full_inbox_retries) return false;
  }
}

HRESULT engine_core::post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) noexcept {
  if (const HRESULT hr = check_overlapped(ov); FAILED(hr)) return hr;
  std::uint16_t slot;
  std::uint64_t st;
  if (!decode_port(port, slot, st) || (st & 3) != port_open_state) return E_INVALIDARG;
  const auto counter = static_cast<std::uint16_t>(counters_per_port_ - 1);
  if (const HRESULT hr = admit(slot, counter, st, E_INVALIDARG, ov); FAILED(hr)) return hr;
  op_state* op = state_of(ov);
  op->kind = op_kind::post;
  op->port_slot = slot;
  op->counter = counter;
  const completion record{error, bytes, ov};
  // Into the shard of the node the caller runs on: its notifiers are the
  // ones whose caches are nearest.
  const std::size_t shard = queue_.shard_count() == 1 ? 0 : plan_.shard_for_cpu(os::current_cpu());
  for (int i = 0; queue_.try_enqueue_bulk(shard, &record, 1) != 1; ++i) {
    // A full queue drains only by delivery: in a pumped engine, only if
    // another thread is pumping now.
    if (i == full_inbox_retries || (pumped_ && !pumping_elsewhere()))
      return withdraw(slot, counter, ov);
    idle_.wake_one(shard);
    std::this_thread::yield();
  }
  if (pumped_)
    pollers_.front()->nudge();  // a pump waiting in the kernel delivers it
  else
    idle_.wake_one(shard);
  return IOCM_E_IO_PENDING;
}

HRESULT engine_core::cancel(HANDLE handle, OVERLAPPED* ov) noexcept {
  const int fd = fd_of(handle);
  const std::uint64_t word = handles_.lookup(fd);
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

bool engine_core::on_notifier_thread() const noexcept { return tl_engine_ == this; }

void engine_core::wait_for_inbox() noexcept {
  if (pumped_) {
    // Nobody else may move it: a pass here does (it never delivers, so
    // this is safe under bind_mutex_).
    const bool owner = on_notifier_thread();
    if (owner || acquire_pump()) {
      pollers_.front()->pump_pass();
      if (!owner) release_pump();
      return;
    }
  }
  std::this_thread::yield();
}

// --- the pump of a pumped engine (IOCM_PUMPED) ----------------------------

bool engine_core::acquire_pump() noexcept {
  // Acquire pairs with release_pump's release: what the last owner did to
  // the poller and the pump's batch happens before what we do.
  if (pump_owned_.exchange(true, std::memory_order_acquire)) return false;
  pump_outer_ = tl_engine_;  // another engine's pump or notifier, when nested
  tl_engine_ = this;
  // The poller's writes to a pipe whose reader is gone would raise SIGPIPE
  // on this thread, as they would on a poller thread, which blocks it.
  static thread_local bool sigpipe_blocked = false;
  if (!sigpipe_blocked) {
    os::block_sigpipe();
    sigpipe_blocked = true;
  }
  return true;
}

void engine_core::release_pump() noexcept {
  tl_engine_ = pump_outer_;
  pump_owned_.store(false, std::memory_order_release);
}

bool engine_core::pump_help() noexcept {
  const bool owner = on_notifier_thread();
  if (!owner && !acquire_pump()) return false;  // the owner delivers
  bool did = false;
  if (pump_next_ < pump_count_) {
    // Close from inside OnComplete: the pump's own batch may hold the very
    // records Close waits for.
    pump_deliver(pump_records_[pump_next_++]);
    did = true;
  } else {
    did = pollers_.front()->pump_pass();
    completion record;
    if (queue_.try_dequeue(pump_token_, record)) {
      pump_deliver(record);
      did = true;
    }
  }
  if (!owner) release_pump();
  return did;
}

HRESULT engine_core::pump(DWORD timeout_ms, DWORD* delivered) noexcept {
  if (delivered != nullptr) *delivered = 0;
  if (!pumped_) return HRESULT_FROM_WIN32(ERROR_INVALID_FUNCTION);
  if (on_notifier_thread() || !acquire_pump()) return HRESULT_FROM_WIN32(ERROR_BUSY);
  using clock = std::chrono::steady_clock;
  const clock::time_point start = clock::now();
  poller& p = *pollers_.front();
  const std::size_t most = config_.queue_capacity;
  pump_delivered_ = 0;
  for (;;) {
    bool moved = p.pump_pass();
    while (pump_delivered_ < most) {
      pump_count_ = queue_.try_dequeue_bulk(pump_token_, pump_records_,
                                            std::min(batch_size, most - pump_delivered_));
      pump_next_ = 0;
      if (pump_count_ == 0) break;
      moved = true;
      // A Close inside OnComplete may deliver some of the batch (pump_help).
      while (pump_next_ < pump_count_) pump_deliver(pump_records_[pump_next_++]);
    }
    pump_count_ = pump_next_ = 0;
    if (pump_delivered_ >= most) break;
    if (moved) continue;  // until nothing moves
    if (pump_delivered_ != 0 || timeout_ms == 0) break;
    DWORD left = IOCM_INFINITE;
    if (timeout_ms != IOCM_INFINITE) {
      const auto spent =
          std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - start);
      if (spent.count() >= timeout_ms) break;
      left = timeout_ms - static_cast<DWORD>(spent.count());
    }
    p.pump_wait(left, queue_);
  }
  const auto n = static_cast<DWORD>(pump_delivered_);
  release_pump();  // the last touch of the engine: it may be destroyed now
  if (delivered != nullptr) *delivered = n;
  return S_OK;
}

}  // namespace iocm::detail
