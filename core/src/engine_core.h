// The engine both public faces share (the COM-shaped manager in
// com_manager.cpp and iocm::engine in cpp_engine.cpp). It composes the
// parts, each in a file of its own, and holds the operation entry points:
//
//   engine_config  the config made whole, the placement planned
//   shard_memory   each queue shard's memory, on its node
//   port_table     ports, their generations, admitted and delivered counts
//   bindings       Bind, Unbind, the default port
//   delivery       one record to the runtime (OnComplete)
//   notifiers      the notifier threads and the thread limits
//   pump           a pumped engine's delivery on the host's threads
//   poller         the pollers (platform/ builds them: backend.h); each
//                  delivers the first record of a harvest itself
//   ring_monitor   drives the ring of a poller stuck inside OnComplete
//
// No OS headers: the pollers and OS services come from platform/ through
// backend.h and os.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bindings.h"
#include "completion_queue.h"
#include "delivery.h"
#include "engine_config.h"
#include "engine_waits.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "notifiers.h"
#include "op_state.h"
#include "placement.h"
#include "poller.h"
#include "port_table.h"
#include "pump.h"
#include "ring_monitor.h"
#include "shard_memory.h"

namespace iocm::detail {

using hosting::DWORD;
using hosting::HANDLE;
using hosting::HRESULT;
using hosting::OVERLAPPED;

/// Counters any thread may read; relaxed snapshots.
struct engine_counters {
  std::uint32_t pollers;
  std::uint32_t shards;      // queue shards (NUMA nodes with a poller)
  std::uint32_t ring_setup;  // iocm_ring_setup the probe chose
  std::uint32_t backend;     // iocm_backend in use
  std::uint32_t notifiers;   // threads alive
  std::uint32_t busy;        // threads inside OnComplete (notifiers, and pollers delivering inline)
  std::uint32_t parked;      // notifiers asleep
  std::uint64_t wakeups;     // futex wake-ups of notifiers
};

class engine_core final : engine_waits {
 public:
  /// prepare_setup(), then create(): reports a refusal (IOCM_LOG_ERROR) and
  /// a placement that cannot be fully applied (one IOCM_LOG_WARNING)
  /// through the config's log callback or stderr. On failure returns null
  /// with an HRESULT in *error and the message in *why.
  static std::unique_ptr<engine_core> build(const iocm_config* in, HRESULT* error,
                                            std::string* why) noexcept;
  /// Builds everything and starts the threads. On failure returns null and
  /// an HRESULT in *error.
  static std::unique_ptr<engine_core> create(const engine_setup& setup, HRESULT* error) noexcept;
  ~engine_core();  // closes every port, joins every thread

  // The hosting contract (docs/ENGINE.md). Thread-safe.
  HRESULT create_port(HANDLE* port) noexcept;
  HRESULT close_port(HANDLE port) noexcept;
  HRESULT set_max_threads(DWORD n) noexcept { return notifiers_.set_max_threads(n); }
  HRESULT get_max_threads(DWORD* n) noexcept { return notifiers_.get_max_threads(n); }
  HRESULT get_available_threads(DWORD* n) noexcept {
    return notifiers_.get_available_threads(n, pollers_in_callback());
  }
  HRESULT set_min_threads(DWORD n) noexcept { return notifiers_.set_min_threads(n); }
  HRESULT get_min_threads(DWORD* n) noexcept { return notifiers_.get_min_threads(n); }
  HRESULT set_clr(hosting::ICLRIoCompletionManager* clr) noexcept { return delivery_.set_clr(clr); }
  static HRESULT initialize_overlapped(void* pv) noexcept;
  HRESULT bind(HANDLE port, HANDLE handle) noexcept { return bindings_.bind(port, handle); }
  HRESULT unbind(HANDLE handle) noexcept { return bindings_.unbind(handle); }
  HRESULT set_completion_modes(HANDLE handle, DWORD modes) noexcept {
    return bindings_.set_completion_modes(handle, modes);
  }

  // Operations: IOCM_E_IO_PENDING when accepted.
  HRESULT submit(op_kind kind, HANDLE handle, void* buffer, std::uint32_t length, std::uint64_t aux,
                 OVERLAPPED* ov) noexcept;
  HRESULT post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) noexcept;
  HRESULT cancel(HANDLE handle, OVERLAPPED* ov) noexcept;

  /// A pumped engine (IOCM_PUMPED): delivery on the calling thread
  /// (IIocmPump::Pump). HRESULT_FROM_WIN32(ERROR_INVALID_FUNCTION) on an
  /// engine with threads.
  HRESULT pump(DWORD timeout_ms, DWORD* delivered) noexcept;
  bool pumped() const noexcept { return pump_ != nullptr; }

  engine_counters counters() const noexcept;
  /// Fills m (every field of this version, struct_size aside): the
  /// pollers' and delivering threads' counts, summed (iocm_metrics).
  void metrics(iocm_metrics& m) const noexcept;
  /// The placement table (describe_plan), with the node each shard's memory
  /// was found on and the CPU each thread found itself on.
  std::string describe() const;

  /// True on a thread that delivers this engine's completions (a pumped
  /// engine's: while it owns the pump).
  bool on_notifier_thread() const noexcept { return delivery_.on_delivering_thread(); }

  engine_core(const engine_core&) = delete;
  engine_core& operator=(const engine_core&) = delete;

 private:
  explicit engine_core(const engine_setup& setup);

  // engine_waits: a pumped engine's pump, or the notifiers, deliver.
  void wait_for_inbox() noexcept override;
  bool help_deliver() noexcept override;

  /// The refusals every operation shares: null, misaligned, no runtime yet.
  HRESULT check_overlapped(OVERLAPPED* ov) const noexcept;
  /// Puts `item` in p's inbox, waiting for room up to room_wait_limit;
  /// false when it stayed full. The first try is inline: it is every
  /// submission's path.
  bool queue_request(poller& p, inbox_item item) noexcept {
    return p.submit(item) || queue_request_waiting(p, item);
  }
  bool queue_request_waiting(poller& p, inbox_item item) noexcept;
  /// A Post's record into a full shard: waits for room up to
  /// room_wait_limit (delivery makes it); false when it stayed full, or in
  /// a pumped engine that no other thread is pumping.
  bool post_waiting(std::size_t shard, const completion& record) noexcept;
  /// A handle with completion modes (binding::has_modes; its binding word,
  /// not the unpacked binding, so that submit keeps no binding in memory):
  /// receiving or
  /// accepting ahead marks the operation (kind, aux) for its poller; with
  /// IOCM_SKIP_COMPLETION_ON_SUCCESS, try_at_once. IOCM_E_IO_PENDING: on to
  /// the poller. Kept off submit's own way, which tests only whether any
  /// mode is set.
  struct moded {
    HRESULT hr;
    op_kind kind;
    std::uint64_t aux;
  };
  [[gnu::noinline]] moded apply_modes(std::uint64_t word, int fd, op_kind kind, void* buffer,
                                      std::uint32_t length, std::uint64_t aux,
                                      OVERLAPPED* ov) noexcept;
  /// A handle with IOCM_SKIP_COMPLETION_ON_SUCCESS: tries the transfer on
  /// this thread. S_OK or the refusal when it is done; IOCM_E_IO_PENDING
  /// when it would wait (the poller takes it, as without the mode).
  HRESULT try_at_once(op_kind kind, os::handle_kind handle, std::uint16_t port_slot, int fd,
                      void* buffer, std::uint32_t length, std::uint64_t aux,
                      OVERLAPPED* ov) noexcept;

  /// The delivered-count row ids (port_table::deliverer): notifier slot i
  /// has row i; the pump has the one after them.
  static constexpr unsigned pump_deliverer = notifier_pool::max_notifiers;
  /// Poller i's row, when it delivers inline.
  static constexpr unsigned poller_deliverer(unsigned i) { return pump_deliverer + 1 + i; }
  /// Pollers whose thread is inside OnComplete now (a snapshot).
  std::uint32_t pollers_in_callback() const noexcept;

  // Declared in the order they are built; destroyed in reverse (the queue
  // before the memory it was allocated from, the pollers before the queue).
  const iocm_config config_;
  const placement_plan plan_;
  const placement_reach reach_;
  std::vector<std::unique_ptr<shard_memory>> shard_memory_;
  completion_queue queue_;
  port_table ports_;
  delivery delivery_;
  notifier_pool notifiers_;
  poller_host host_;  // what the pollers see of the engine
  std::vector<std::unique_ptr<poller>> pollers_;
  bindings bindings_;
  std::unique_ptr<detail::pump> pump_;     // a pumped engine's; null otherwise
  std::unique_ptr<ring_monitor> monitor_;  // when pollers deliver inline; null otherwise
};

/// Runs destroy() now; or, when called on one of core's notifier threads
/// (the last reference dropped inside OnComplete), on a new thread, because a
/// notifier cannot join itself. If no thread can be started the engine is
/// leaked rather than deadlocked.
template <class F>
void destroy_off_notifier(const engine_core& core, F destroy) noexcept {
  if (core.on_notifier_thread()) {
    try {
      std::thread(std::move(destroy)).detach();
    } catch (...) {
    }
    return;
  }
  destroy();
}

}  // namespace iocm::detail
