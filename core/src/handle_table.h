// Which port and poller a bound descriptor belongs to, looked up without a
// lock on every submission. Two levels (1024 chunks of 1024 entries) so a
// process with few descriptors pays 8 KiB, and descriptors up to 2^20 work.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>

#include "os.h"

namespace iocm::detail {

/// A binding packed in one word; 0 means unbound.
struct binding {
  std::uint16_t port_slot = 0;
  std::uint16_t poller = 0;
  os::handle_kind kind = os::handle_kind::other;
  bool made_nonblocking = false;      // Bind set O_NONBLOCK (epoll); Unbind clears it again
  std::uint32_t port_generation = 0;  // low 28 bits: tells a reused port slot apart

  static constexpr std::uint32_t generation_mask = (1u << 28) - 1;
  static std::uint64_t pack(const binding& b) noexcept {
    return 1u | std::uint64_t{b.port_slot} << 1 | std::uint64_t{b.poller} << 17 |
           std::uint64_t{static_cast<std::uint8_t>(b.kind)} << 33 |
           std::uint64_t{b.made_nonblocking} << 35 |
           std::uint64_t{b.port_generation & generation_mask} << 36;
  }
  static binding unpack(std::uint64_t w) noexcept {
    return {static_cast<std::uint16_t>(w >> 1), static_cast<std::uint16_t>(w >> 17),
            static_cast<os::handle_kind>((w >> 33) & 3), ((w >> 35) & 1) != 0,
            static_cast<std::uint32_t>(w >> 36) & generation_mask};
  }
};

class handle_table {
 public:
  static constexpr int max_fd = 1 << 20;  // fds at or above this are refused at Bind

  handle_table() = default;
  handle_table(const handle_table&) = delete;
  handle_table& operator=(const handle_table&) = delete;
  ~handle_table() {
    for (auto& c : chunks_) delete c.load(std::memory_order_relaxed);
  }

  /// The binding word of fd, or 0. Lock-free; any thread.
  std::uint64_t lookup(int fd) const noexcept {
    if (fd < 0 || fd >= max_fd) return 0;
    // Acquire pairs with the release in slot(): the chunk's zeroed entries
    // are visible before its pointer.
    const chunk* c =
        chunks_[static_cast<unsigned>(fd) >> chunk_bits].load(std::memory_order_acquire);
    if (c == nullptr) return 0;
    // Acquire pairs with the release in set(): a binding is seen whole.
    return c->entries[static_cast<unsigned>(fd) & chunk_mask].load(std::memory_order_acquire);
  }

  /// The entry for fd, allocating its chunk. Writers hold the engine's bind
  /// mutex, so chunks are never allocated twice. Throws std::bad_alloc.
  std::atomic<std::uint64_t>& slot(int fd) {
    auto& top = chunks_[static_cast<unsigned>(fd) >> chunk_bits];
    chunk* c = top.load(std::memory_order_relaxed);
    if (c == nullptr) {
      c = new chunk();
      top.store(c, std::memory_order_release);
    }
    return c->entries[static_cast<unsigned>(fd) & chunk_mask];
  }

  /// Calls f(fd, word) for every bound entry (bind mutex held).
  template <class F>
  void for_each_bound(F&& f) {
    for (unsigned i = 0; i < chunk_count; ++i) {
      chunk* c = chunks_[i].load(std::memory_order_relaxed);
      if (c == nullptr) continue;
      for (unsigned j = 0; j < chunk_size; ++j) {
        const std::uint64_t w = c->entries[j].load(std::memory_order_relaxed);
        if (w != 0) f(static_cast<int>(i << chunk_bits | j), c->entries[j]);
      }
    }
  }

 private:
  static constexpr unsigned chunk_bits = 10;
  static constexpr unsigned chunk_size = 1u << chunk_bits;
  static constexpr unsigned chunk_mask = chunk_size - 1;
  static constexpr unsigned chunk_count = max_fd / chunk_size;
  struct chunk {
    std::array<std::atomic<std::uint64_t>, chunk_size> entries{};
  };
  std::array<std::atomic<chunk*>, chunk_count> chunks_{};
};

}  // namespace iocm::detail
