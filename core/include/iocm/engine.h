// iocm/engine.h — the idiomatic C++ face of iocm's completion engine, for
// hosts that are not COM-shaped. It shares one implementation with the
// IHostIoCompletionManager from iocm/host_io.h; the semantics (exactly-once
// completion, Win32 codes, Close) are the same and documented in
// docs/ENGINE.md.
//
// Thread-safety: every member function may be called from any thread,
// including from inside completion_handler::on_complete. Operations return an
// empty std::error_code when accepted (the handler will run exactly once for
// that overlapped) and an error in hresult_category() when refused (it never
// will).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>

#include "iocm/host_io.h"
#include "iocm/hosting.h"

namespace iocm {

using engine_config = iocm_config;

/// The defaults (iocm_config_init).
inline engine_config default_engine_config() noexcept {
  engine_config c;
  iocm_config_init(&c);
  return c;
}

/// Readies an OVERLAPPED's host area (InitializeHostOverlapped). Call it once
/// per new allocation; a completed one is ready for reuse as it is.
/// E_POINTER / E_INVALIDARG (misaligned) / ERROR_BUSY (still in flight).
hosting::HRESULT prepare_overlapped(hosting::OVERLAPPED* ov) noexcept;

/// An OVERLAPPED with iocm's host area right after it; constructed ready.
struct overlapped {
  hosting::OVERLAPPED ov{};
  alignas(8) std::byte host_area[IOCM_HOST_OVERLAPPED_SIZE]{};

  overlapped() noexcept { prepare_overlapped(&ov); }
  overlapped(const overlapped&) = delete;  // the engine holds its address while in flight
  overlapped& operator=(const overlapped&) = delete;
  /// Sets the 64-bit file offset (Offset/OffsetHigh) for read and write.
  void set_offset(std::uint64_t offset) noexcept {
    ov.Offset = static_cast<hosting::DWORD>(offset);
    ov.OffsetHigh = static_cast<hosting::DWORD>(offset >> 32);
  }
};
static_assert(offsetof(overlapped, host_area) == sizeof(hosting::OVERLAPPED),
              "the host area starts right after the OVERLAPPED");

/// Receives every completion, on a notifier thread. It may block (other
/// notifiers keep going, up to max_threads) and may call the engine.
class completion_handler {
 public:
  virtual void on_complete(std::uint32_t error, std::uint32_t bytes,
                           hosting::OVERLAPPED* ov) noexcept = 0;

 protected:
  ~completion_handler() = default;
};

/// HRESULT values as std::error_code; message() names the code.
const std::error_category& hresult_category() noexcept;
inline std::error_code make_hresult_error(hosting::HRESULT hr) noexcept {
  return {static_cast<int>(hr), hresult_category()};
}

struct engine_stats {
  std::uint32_t pollers;
  std::uint32_t ring_setup;  ///< the iocm_ring_setup the probe settled on
  std::uint32_t notifiers;   ///< notifier threads alive
  std::uint32_t busy;     ///< threads inside on_complete (notifiers, and pollers delivering inline)
  std::uint32_t parked;   ///< notifiers asleep
  std::uint64_t wakeups;  ///< times a sleeping notifier was woken
  std::uint32_t shards;   ///< completion queue shards: NUMA nodes with a poller
  std::uint32_t backend;  ///< the iocm_backend in use (URING or EPOLL)
};

using port_handle = hosting::HANDLE;

class engine {
 public:
  /// Starts pollers and notifiers. Throws std::system_error (in
  /// hresult_category()) if the config is invalid (what() names the value),
  /// if io_uring is asked for (IOCM_BACKEND_URING) and refused, or if the
  /// engine cannot start (out of memory). With the default backend a
  /// refused io_uring is not an error: the engine uses epoll and says why
  /// once through the config's log.
  explicit engine(completion_handler& handler,
                  const engine_config& config = default_engine_config());
  /// Closes every port (in-flight operations complete aborted) and joins
  /// every thread. From inside on_complete the teardown finishes on another
  /// thread.
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  /// Throws std::system_error when no port slot is free.
  port_handle create_port();
  std::error_code close_port(port_handle port) noexcept;
  /// port == nullptr: the default port, created on first use.
  std::error_code bind(int fd, port_handle port = nullptr) noexcept;
  /// Cancels what is in flight on fd (ERROR_OPERATION_ABORTED) and forgets
  /// it; fd may be closed as soon as this returns (IIocmHostIo::Unbind).
  std::error_code unbind(int fd) noexcept;

  std::error_code read(int fd, void* buffer, std::uint32_t length, overlapped& o) noexcept;
  std::error_code write(int fd, const void* buffer, std::uint32_t length, overlapped& o) noexcept;
  std::error_code recv(int fd, void* buffer, std::uint32_t length, overlapped& o) noexcept;
  std::error_code send(int fd, const void* buffer, std::uint32_t length, overlapped& o) noexcept;
  /// *accepted receives the new socket's descriptor before the handler runs.
  std::error_code accept(int fd, int* accepted, overlapped& o) noexcept;
  std::error_code connect(int fd, const void* address, std::uint32_t length,
                          overlapped& o) noexcept;
  std::error_code post(port_handle port, std::uint32_t error, std::uint32_t bytes,
                       overlapped& o) noexcept;
  /// One operation (o != nullptr) or all on fd.
  std::error_code cancel(int fd, overlapped* o = nullptr) noexcept;
  std::error_code nop(int fd, overlapped& o) noexcept;

  /// An engine configured with IOCM_PUMPED: delivers completions on this
  /// thread (IIocmPump::Pump). Waits up to timeout_ms (IOCM_INFINITE: no
  /// limit) when there is nothing yet; *delivered (may be null) receives how
  /// many on_complete calls it made. ERROR_BUSY: another thread is pumping,
  /// or this one is inside on_complete; ERROR_INVALID_FUNCTION: the engine
  /// has threads of its own.
  std::error_code pump(std::uint32_t timeout_ms = 0, std::uint32_t* delivered = nullptr) noexcept;

  std::error_code set_max_threads(std::uint32_t n) noexcept;
  std::error_code set_min_threads(std::uint32_t n) noexcept;
  std::uint32_t max_threads() const noexcept;
  std::uint32_t min_threads() const noexcept;
  std::uint32_t available_threads() const noexcept;
  engine_stats stats() const noexcept;
  /// What the engine counted about itself (IIocmMetrics; docs/ENGINE.md,
  /// "Metrics"): a snapshot.
  iocm_metrics metrics() const noexcept;
  /// Which thread runs where and which memory sits on which node
  /// (docs/NUMA.md), as lines of text.
  std::string placement() const;

 private:
  struct impl;
  impl* impl_;
};

}  // namespace iocm
