// Per-descriptor entries, found without a lock by descriptor number: two
// levels (1024 chunks of 1024 entries), so a process with few descriptors
// pays one chunk, and descriptors up to 2^20 work. Chunks are made by the
// binding thread (under the engine's bind lock), where running out of
// memory can still be an HRESULT, and never freed before the table: a
// lookup on the hot path never allocates.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace iocm::detail {

template <class Entry>
class fd_table {
 public:
  static constexpr int max_fd = 1 << 20;  // descriptors at or above this are refused at Bind

  fd_table() = default;
  fd_table(const fd_table&) = delete;
  fd_table& operator=(const fd_table&) = delete;
  ~fd_table() {
    for (auto& c : chunks_) delete c.load(std::memory_order_relaxed);
  }

  /// The entry of fd, or null when no entry in its range was ever made.
  /// Lock-free; any thread.
  Entry* find(int fd) const noexcept {
    if (fd < 0 || fd >= max_fd) return nullptr;
    // Acquire pairs with the release in reserve(): the chunk's
    // value-initialised entries are visible before its pointer.
    chunk* c = chunks_[static_cast<unsigned>(fd) >> chunk_bits].load(std::memory_order_acquire);
    return c == nullptr ? nullptr : &c->entries[static_cast<unsigned>(fd) & chunk_mask];
  }

  /// The entry of fd (0 <= fd < max_fd), making its chunk first. Callers
  /// serialise (the engine's bind lock). Throws std::bad_alloc.
  Entry& reserve(int fd) {
    auto& top = chunks_[static_cast<unsigned>(fd) >> chunk_bits];
    chunk* c = top.load(std::memory_order_relaxed);
    if (c == nullptr) {
      c = new chunk();
      top.store(c, std::memory_order_release);
    }
    return c->entries[static_cast<unsigned>(fd) & chunk_mask];
  }

  /// Calls f(fd, entry) for every entry of every chunk made so far, from
  /// descriptor `from` on, until f returns false; returns the descriptor f
  /// stopped at, or max_fd. Callers serialise with reserve().
  template <class F>
  int for_each(int from, F&& f) {
    for (unsigned i = static_cast<unsigned>(from) >> chunk_bits; i < chunk_count; ++i) {
      chunk* c = chunks_[i].load(std::memory_order_relaxed);
      if (c == nullptr) continue;
      const unsigned first = i == (static_cast<unsigned>(from) >> chunk_bits)
                                 ? static_cast<unsigned>(from) & chunk_mask
                                 : 0;
      for (unsigned j = first; j < chunk_size; ++j) {
        const int fd = static_cast<int>(i << chunk_bits | j);
        if (!f(fd, c->entries[j])) return fd;
      }
    }
    return max_fd;
  }

 private:
  static constexpr unsigned chunk_bits = 10;
  static constexpr unsigned chunk_size = 1u << chunk_bits;
  static constexpr unsigned chunk_mask = chunk_size - 1;
  static constexpr unsigned chunk_count = max_fd / chunk_size;
  struct chunk {
    std::array<Entry, chunk_size> entries{};
  };
  std::array<std::atomic<chunk*>, chunk_count> chunks_{};
};

}  // namespace iocm::detail
