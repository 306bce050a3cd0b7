// Which port and poller each descriptor is bound to: Bind (with the default
// port a null port means), Unbind, and Close's unbinding of a whole port.
// Submissions look a binding up without a lock (handle_table.h); every
// change is made under the ports' mutex (port_table.h), so a binding is
// only ever made to an open port.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "engine_waits.h"
#include "handle_table.h"
#include "iocm/hosting.h"
#include "poller.h"
#include "port_table.h"

namespace iocm::detail {

class bindings {
 public:
  bindings(port_table& ports, const std::vector<std::unique_ptr<poller>>& pollers,
           engine_waits& waits, log_sink log) noexcept
      : ports_(ports), pollers_(pollers), waits_(waits), log_(log) {}
  bindings(const bindings&) = delete;
  bindings& operator=(const bindings&) = delete;

  /// The binding word of fd (binding::unpack), or 0 when fd is not bound.
  /// Lock-free; any thread.
  std::uint64_t lookup(int fd) const noexcept { return handles_.lookup(fd); }

  /// Binds `handle` to `port` (null: the default port, made on first use)
  /// and to the next poller, round-robin. Thread-safe.
  hosting::HRESULT bind(hosting::HANDLE port, hosting::HANDLE handle) noexcept;
  /// Unbinds `handle`: its operations complete aborted, and once this
  /// returns the kernel holds no reference to it by number (the host may
  /// close it). Thread-safe; may be called from inside OnComplete.
  hosting::HRESULT unbind(hosting::HANDLE handle) noexcept;
  /// IIocmHostIo2::SetCompletionModes: ERROR_INVALID_HANDLE when not bound,
  /// E_INVALIDARG for a mode iocm does not know.
  hosting::HRESULT set_completion_modes(hosting::HANDLE handle, hosting::DWORD modes) noexcept;

  // --- Close's part (engine_core::close_port).
  /// The port is closing (ports' mutex held): it is no longer the default.
  void forget_default_locked(hosting::HANDLE port) noexcept {
    if (default_port_ == port) default_port_ = nullptr;
  }
  /// Unbinds every handle of port `slot` and has their pollers cancel what
  /// the kernel holds for them. The descriptors Bind made non-blocking are
  /// added to `made_nonblocking`: Close makes them blocking again once
  /// nothing on them is left (restore_blocking_locked).
  void unbind_port(std::uint16_t slot, std::vector<int>& made_nonblocking) noexcept;
  /// Clears the O_NONBLOCK Bind set on fd, or hands that duty to a binding
  /// of fd made since (ports' mutex held).
  void restore_blocking_locked(int fd) noexcept;

 private:
  /// Keeps what an Unbind's poller received ahead on fd for a later Bind.
  void keep_carried_locked(int fd, std::unique_ptr<carried_bytes> carried) noexcept;
  /// Bind of fd to poller p: bytes kept for this socket go to p first.
  hosting::HRESULT hand_carried_locked(int fd, poller& p) noexcept;

  port_table& ports_;
  const std::vector<std::unique_ptr<poller>>& pollers_;
  engine_waits& waits_;
  const log_sink log_;
  handle_table handles_;
  hosting::HANDLE default_port_ = nullptr;  // ports' mutex
  // Bytes received ahead on sockets that were unbound, by descriptor
  // (ports' mutex): the next Bind of the same socket hands them to its
  // poller; a Bind of another socket with that number drops them.
  std::unordered_map<int, std::unique_ptr<carried_bytes>> carried_;
  std::atomic<std::uint32_t> next_poller_{0};  // Bind spreads handles round-robin
};

}  // namespace iocm::detail
