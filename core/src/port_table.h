// The completion ports: a fixed table of slots, each with a generation (a
// port handle names slot and generation, so a closed port's handle stays
// refused after its slot is reused), and what each port has accepted and
// delivered.
//
// The counts are split by who writes them, as the kernel's percpu_ref is,
// so that a submission and its delivery never write the same cache line:
// the submitting side counts operations admitted (per port, one line per
// poller plus one for posts); each delivering thread (a notifier, or a
// pumped engine's pump) counts what it delivered in a row of its own,
// written by that thread alone, without a locked instruction. Both only
// grow, except that a refused admission takes its own count back. Close
// sums them: pending = admitted - delivered.
//
// Both are kept by kind of operation (a word each in the line or row the
// count goes to anyway), so the engine's metrics of what was accepted and
// completed, by kind, cost the hot path no count of their own: they are
// these counts, summed over the ports (iocm_metrics).
//
// Close's handshake: admit() counts an operation, then looks at the port;
// begin_close_locked() marks the port closing, then Close waits until
// nothing is pending. Both sides are seq_cst, so either Close sees the
// count and waits for the operation, or the operation sees the port closing
// and is refused (E1/E2).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "iocm/cache_line.h"
#include "iocm/hosting.h"
#include "metrics.h"
#include "op_state.h"

namespace iocm::detail {

class port_table {
 public:
  // A slot's state word: generation << 2 | one of these.
  static constexpr std::uint64_t free_state = 0, open_state = 1, closing_state = 2;

  /// `counters_per_port`: one per poller, and one for posts (the last).
  /// `deliverers`: how many delivering threads may have a row (ids below).
  port_table(std::uint32_t max_ports, unsigned counters_per_port, unsigned deliverers);
  ~port_table();

  /// What one delivering thread has delivered, per port and kind (the
  /// kind an OnComplete completed: op_kind, aborted apart). Written by that
  /// thread only; read by Close and by the metrics.
  class delivered_row {
   public:
    explicit delivered_row(std::uint32_t max_ports);
    /// Where a record of port `slot` and kind `kind` is counted.
    static std::uint32_t cell(std::uint16_t slot, op_kind kind) noexcept {
      return std::uint32_t{slot} * op_kind_count + static_cast<std::uint32_t>(kind);
    }
    static std::uint16_t slot_of(std::uint32_t cell) noexcept {
      return static_cast<std::uint16_t>(cell / op_kind_count);
    }
    /// One more record delivered, counted in `cell`: OnComplete has returned.
    void add(std::uint32_t cell) noexcept {
      std::atomic<std::int64_t>& c = counts_[pad + cell];
      // One writer: no RMW. Release pairs with pending_total's acquire.
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    /// Records of port `slot` delivered, of every kind.
    std::int64_t read(std::uint16_t slot) const noexcept;
    /// Adds what it delivered, by kind over every port, to `by_kind`;
    /// returns their sum. A snapshot (relaxed).
    std::uint64_t add_totals(std::uint64_t (&by_kind)[op_kind_count]) const noexcept;

   private:
    // A slot's counts are op_kind_count words in a row; a line of padding
    // at each end keeps another allocation off the row's lines.
    static constexpr std::size_t pad = cache_line_size / sizeof(std::int64_t);
    static std::size_t index(std::uint16_t slot, op_kind kind) noexcept {
      return pad + cell(slot, kind);
    }
    std::unique_ptr<std::atomic<std::int64_t>[]> counts_;  // first: the hot path's one load
    const std::uint32_t max_ports_;
  };
  /// The row of delivering thread `id` (a notifier's slot index, or the
  /// pump's), made on first use and the same for the table's life, so the
  /// counts outlive a thread that retires. The caller keeps two calls for
  /// one id apart (the notifiers' spawning lock, the engine's creation).
  /// Throws std::bad_alloc.
  delivered_row& deliverer(unsigned id);

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

  /// Adds the operations and Posts ever admitted (not withdrawn), by kind,
  /// to `by_kind` (iocm_metrics). Any thread; a snapshot.
  void add_admitted(std::uint64_t (&by_kind)[op_kind_count]) const noexcept;
  /// The row of deliverer `id`, or null if that thread never delivered.
  const delivered_row* row_if_made(unsigned id) const noexcept {
    return id < deliverers_ ? rows_[id].load(std::memory_order_acquire) : nullptr;
  }
  /// The counter of posts.
  std::uint16_t post_counter() const noexcept {
    return static_cast<std::uint16_t>(counters_per_port_ - 1);
  }

  /// Counts the operation, of `kind`, on its port (refused with port_gone
  /// unless the port is still in `expected`, an open state word) and moves
  /// its state from idle to in flight. Any thread.
  hosting::HRESULT admit(std::uint16_t slot, std::uint16_t counter, op_kind kind,
                         std::uint64_t expected, hosting::HRESULT port_gone,
                         op_state& op) noexcept {
    std::atomic<std::int64_t>& pend = admitted(slot, counter, kind);
    // (E1) pairs with (E2) in begin_close_locked: count first, then look at
    // the port. Either Close sees our count and waits for us, or we see it
    // closing.
    pend.fetch_add(1, std::memory_order_seq_cst);
    if (ports_[slot].state.load(std::memory_order_seq_cst) != expected) {
      pend.fetch_sub(1, std::memory_order_release);
      return port_gone;
    }
    const hosting::HRESULT claimed = op.claim();
    if (hosting::FAILED(claimed)) pend.fetch_sub(1, std::memory_order_release);
    return claimed;
  }
  /// Undoes admit() when the operation could not be queued: the engine is
  /// saturated; `kind`: as admitted.
  hosting::HRESULT withdraw(std::uint16_t slot, std::uint16_t counter, op_kind kind,
                            op_state& op) noexcept {
    op.phase.store(op_state::idle, std::memory_order_release);
    admitted(slot, counter, kind).fetch_sub(1, std::memory_order_release);
    return hosting::HRESULT_FROM_WIN32(hosting::ERROR_NO_SYSTEM_RESOURCES);
  }

  /// Close, first step (mutex held): `port` stops accepting operations.
  /// E_INVALIDARG unless it is open.
  hosting::HRESULT begin_close_locked(hosting::HANDLE port, std::uint16_t& slot,
                                      std::uint64_t& state) noexcept;
  /// Operations accepted on `slot` and not yet delivered; once it reads 0,
  /// every OnComplete of the port has returned.
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
  // A counter's line: a word per kind that can be submitted (every kind but
  // aborted), so counting by kind is the one fetch_add a count takes anyway.
  struct alignas(cache_line_size) admitted_counter {
    static constexpr std::size_t kinds = static_cast<std::size_t>(op_kind::post) + 1;
    std::atomic<std::int64_t> by_kind[kinds]{};
  };
  static_assert(sizeof(admitted_counter) == cache_line_size, "each counter on a line of its own");

  static hosting::HANDLE handle_of(std::uint16_t slot, std::uint64_t generation) noexcept {
    return reinterpret_cast<hosting::HANDLE>(
        static_cast<std::uintptr_t>(generation << 16 | (slot + 1u)));
  }
  std::atomic<std::int64_t>& admitted(std::uint16_t slot, std::uint16_t counter,
                                      op_kind kind) noexcept {
    return admitted_[std::size_t{slot} * counters_per_port_ + counter]
        .by_kind[static_cast<std::size_t>(kind)];
  }

  const std::uint32_t max_ports_;
  const unsigned counters_per_port_;
  std::unique_ptr<port_entry[]> ports_;
  std::unique_ptr<admitted_counter[]> admitted_;
  const unsigned deliverers_;
  // Each delivering thread's row, or null until it is made; published with
  // release for pending_total.
  std::unique_ptr<std::atomic<delivered_row*>[]> rows_;
  std::mutex mutex_;
};

}  // namespace iocm::detail
