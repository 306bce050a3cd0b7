// The completion ports: a fixed table of slots, each with a generation (a
// port handle names slot and generation, so a closed port's handle stays
// refused after its slot is reused), and per port one pending counter per
// poller plus one for posts: operations accepted and not yet delivered.
//
// Close's handshake: admit() counts an operation, then looks at the port;
// begin_close_locked() marks the port closing, then Close waits for the
// counters to reach zero. Both sides are seq_cst, so either Close sees the
// count and waits for the operation, or the operation sees the port closing
// and is refused (E1/E2).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "iocm/cache_line.h"
#include "iocm/hosting.h"
#include "op_state.h"

namespace iocm::detail {

class port_table {
 public:
  // A slot's state word: generation << 2 | one of these.
  static constexpr std::uint64_t free_state = 0, open_state = 1, closing_state = 2;

  /// `counters_per_port`: one per poller, and one for posts (the last).
  port_table(std::uint32_t max_ports, unsigned counters_per_port);

  /// Guards every change of a port's state, and the bindings (bindings.h):
  /// a binding is made only while its port is open.
  std::mutex& mutex() noexcept { return mutex_; }

  /// Whether `slot` still accepts operations. Lock-free; any thread.
  bool is_open(std::uint16_t slot) const noexcept {
    return (ports_[slot].state.load(std::memory_order_acquire) & 3) == open_state;
  }
  /// The slot and state word of a port handle; false when the handle names
  /// no slot, or a slot since reused (its generation differs).
  bool decode(hosting::HANDLE port, std::uint16_t& slot, std::uint64_t& state) const noexcept;
  /// decode(), and the port is open.
  bool decode_open(hosting::HANDLE port, std::uint16_t& slot, std::uint64_t& state) const noexcept {
    return decode(port, slot, state) && (state & 3) == open_state;
  }
  /// A new port in a free slot, or null when none is free (mutex held).
  hosting::HANDLE open_locked() noexcept;
  /// The handle of every open port (the engine's destructor closes them).
  template <class F>
  void for_each_open(F&& f) const {
    for (std::uint32_t slot = 0; slot < max_ports_; ++slot) {
      const std::uint64_t st = ports_[slot].state.load(std::memory_order_acquire);
      if ((st & 3) == open_state) f(handle_of(static_cast<std::uint16_t>(slot), st >> 2));
    }
  }

  /// The counter of posts.
  std::uint16_t post_counter() const noexcept {
    return static_cast<std::uint16_t>(counters_per_port_ - 1);
  }

  /// Counts the operation on its port (refused with port_gone unless the
  /// port is still in `expected`, an open state word) and moves its state
  /// from idle to in flight. Any thread.
  hosting::HRESULT admit(std::uint16_t slot, std::uint16_t counter, std::uint64_t expected,
                         hosting::HRESULT port_gone, op_state& op) noexcept {
    std::atomic<std::int64_t>& pend = pending(slot, counter);
    // (E1) pairs with (E2) in begin_close_locked: count first, then look at
    // the port. Either Close sees our count and waits for us, or we see it
    // closing.
    pend.fetch_add(1, std::memory_order_seq_cst);
    if (ports_[slot].state.load(std::memory_order_seq_cst) != expected) {
      pend.fetch_sub(1, std::memory_order_release);
      return port_gone;
    }
    std::uint64_t phase = op_state::idle;
    // acquire: whatever the previous completion wrote is ours now.
    if (!op.phase.compare_exchange_strong(phase, op_state::in_flight, std::memory_order_acquire)) {
      pend.fetch_sub(1, std::memory_order_release);
      return hosting::HRESULT_FROM_WIN32(
          phase == op_state::in_flight ? hosting::ERROR_BUSY : hosting::ERROR_INVALID_PARAMETER);
    }
    return hosting::S_OK;
  }
  /// Undoes admit() when the operation could not be queued: the engine is
  /// saturated.
  hosting::HRESULT withdraw(std::uint16_t slot, std::uint16_t counter, op_state& op) noexcept {
    op.phase.store(op_state::idle, std::memory_order_release);
    pending(slot, counter).fetch_sub(1, std::memory_order_release);
    return hosting::HRESULT_FROM_WIN32(hosting::ERROR_NO_SYSTEM_RESOURCES);
  }
  /// An admitted operation was delivered: OnComplete has returned.
  void delivered(std::uint16_t slot, std::uint16_t counter) noexcept {
    // Release pairs with pending_total's acquire.
    pending(slot, counter).fetch_sub(1, std::memory_order_release);
  }

  /// Close, first step (mutex held): `port` stops accepting operations.
  /// E_INVALIDARG unless it is open.
  hosting::HRESULT begin_close_locked(hosting::HANDLE port, std::uint16_t& slot,
                                      std::uint64_t& state) noexcept;
  /// Operations accepted on `slot` and not yet delivered.
  std::int64_t pending_total(std::uint16_t slot) const noexcept;
  /// Close, last step (mutex held): the slot is free again, same generation.
  void end_close_locked(std::uint16_t slot, std::uint64_t state) noexcept {
    ports_[slot].state.store(state & ~std::uint64_t{3}, std::memory_order_release);
  }

 private:
  struct port_entry {
    // generation << 2 | free/open/closing. Changed under mutex_ only.
    std::atomic<std::uint64_t> state{free_state};
  };
  struct alignas(cache_line_size) pending_counter {
    std::atomic<std::int64_t> value{0};
  };
  static_assert(sizeof(pending_counter) == cache_line_size, "each counter on a line of its own");

  static hosting::HANDLE handle_of(std::uint16_t slot, std::uint64_t generation) noexcept {
    return reinterpret_cast<hosting::HANDLE>(
        static_cast<std::uintptr_t>(generation << 16 | (slot + 1u)));
  }
  std::atomic<std::int64_t>& pending(std::uint16_t slot, std::uint16_t counter) noexcept {
    return pending_[std::size_t{slot} * counters_per_port_ + counter].value;
  }

  const std::uint32_t max_ports_;
  const unsigned counters_per_port_;
  std::unique_ptr<port_entry[]> ports_;
  std::unique_ptr<pending_counter[]> pending_;
  std::mutex mutex_;
};

}  // namespace iocm::detail
