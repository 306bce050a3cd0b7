// Which port and poller a bound descriptor belongs to, looked up without a
// lock on every submission (an fd_table of binding words).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "fd_table.h"
#include "os.h"

namespace iocm::detail {

/// A binding packed in one word; 0 means unbound.
struct binding {
  std::uint16_t port_slot = 0;
  std::uint16_t poller = 0;
  os::handle_kind kind = os::handle_kind::other;
  bool made_nonblocking = false;      // Bind set O_NONBLOCK (epoll); Unbind clears it again
  std::uint32_t port_generation = 0;  // low 28 bits: tells a reused port slot apart
  // IOCM_SKIP_COMPLETION_ON_SUCCESS: reads and writes that can finish at
  // once do so on the caller's thread (IIocmHostIo2::SetCompletionModes).
  bool skip_on_success = false;
  // IOCM_RECEIVE_AHEAD: a socket's Recvs go through the poller's receive
  // ahead (a multishot receive into its buffers).
  bool receive_ahead = false;
  // IOCM_ACCEPT_AHEAD: a listener's Accepts go through the poller's
  // multishot accept.
  bool accept_ahead = false;

  static constexpr std::uint32_t generation_mask = (1u << 28) - 1;
  static constexpr std::uint32_t poller_mask = (1u << 13) - 1;  // pollers are at most 1024
  /// Whether any completion mode (accept_ahead, receive_ahead,
  /// skip_on_success: bits 30-32) is set in a packed word.
  static bool has_modes(std::uint64_t w) noexcept { return ((w >> 30) & 7) != 0; }
  static std::uint64_t pack(const binding& b) noexcept {
    return 1u | std::uint64_t{b.port_slot} << 1 | std::uint64_t{b.poller & poller_mask} << 17 |
           std::uint64_t{b.accept_ahead} << 30 | std::uint64_t{b.receive_ahead} << 31 |
           std::uint64_t{b.skip_on_success} << 32 |
           std::uint64_t{static_cast<std::uint8_t>(b.kind)} << 33 |
           std::uint64_t{b.made_nonblocking} << 35 |
           std::uint64_t{b.port_generation & generation_mask} << 36;
  }
  static binding unpack(std::uint64_t w) noexcept {
    return {static_cast<std::uint16_t>(w >> 1),
            static_cast<std::uint16_t>((w >> 17) & poller_mask),
            static_cast<os::handle_kind>((w >> 33) & 3),
            ((w >> 35) & 1) != 0,
            static_cast<std::uint32_t>(w >> 36) & generation_mask,
            ((w >> 32) & 1) != 0,
            ((w >> 31) & 1) != 0,
            ((w >> 30) & 1) != 0};
  }
};

class handle_table {
 public:
  using entries = fd_table<std::atomic<std::uint64_t>>;
  static constexpr int max_fd = entries::max_fd;  // fds at or above this are refused at Bind

  /// The binding word of fd, or 0. Lock-free; any thread.
  std::uint64_t lookup(int fd) const noexcept {
    const std::atomic<std::uint64_t>* e = entries_.find(fd);
    // Acquire pairs with Bind's release store: a binding is seen whole.
    return e == nullptr ? 0 : e->load(std::memory_order_acquire);
  }

  /// The entry for fd, allocating its chunk. Writers hold the engine's bind
  /// mutex. Throws std::bad_alloc.
  std::atomic<std::uint64_t>& slot(int fd) { return entries_.reserve(fd); }

  /// Calls f(fd, entry) for every bound descriptor from `from` on, until f
  /// returns false; returns the descriptor it stopped at, or max_fd (bind
  /// mutex held).
  template <class F>
  int for_each_bound(int from, F&& f) {
    return entries_.for_each(from, [&](int fd, std::atomic<std::uint64_t>& e) {
      return e.load(std::memory_order_relaxed) == 0 || f(fd, e);
    });
  }

 private:
  entries entries_;
};

/// The descriptor a HANDLE names, or -1 when it cannot be one iocm binds.
inline int fd_of(const void* handle) noexcept {
  const auto v = reinterpret_cast<std::intptr_t>(handle);
  return v < 0 || v >= handle_table::max_fd ? -1 : static_cast<int>(v);
}

}  // namespace iocm::detail
