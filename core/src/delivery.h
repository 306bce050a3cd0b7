// Delivery of one completion record to the runtime: OnComplete, then the
// record's port counts it as delivered. And what each thread knows about
// the delivering it does: which engine's records it delivers (a notifier
// thread, or the thread that owns a pumped engine's pump), and which record
// it is inside OnComplete for, so that a Close called from inside that
// OnComplete can account for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>

#include "iocm/completion.h"
#include "iocm/hosting.h"
#include "op_state.h"
#include "port_table.h"

namespace iocm::detail {

class delivery {
 public:
  delivery() noexcept = default;
  ~delivery();  // releases the runtime's callback object
  delivery(const delivery&) = delete;
  delivery& operator=(const delivery&) = delete;

  /// The runtime's callback object, set once (AddRef'd). E_POINTER;
  /// HOST_E_INVALIDOPERATION for a second, different one. Thread-safe.
  hosting::HRESULT set_clr(hosting::ICLRIoCompletionManager* clr) noexcept;
  bool has_clr() const noexcept { return clr_.load(std::memory_order_acquire) != nullptr; }

  /// Calls OnComplete for `record` on this thread, then counts it delivered
  /// on its port (unless a Close inside that OnComplete already did).
  /// Inline: every notifier and the pump call it per record.
  void deliver(const completion& record) noexcept {
    auto* ov = static_cast<hosting::OVERLAPPED*>(record.overlapped);
    op_state* op = state_of(ov);
    // Counted by port and kind (aborted when the engine completed it so:
    // finish()).
    const std::uint32_t cell = port_table::delivered_row::cell(op->port_slot, op->kind);
    ov->Internal = record.error;
    ov->InternalHigh = record.bytes;
    // Release: the runtime may reuse the OVERLAPPED from inside OnComplete
    // (InitializeHostOverlapped, then a new submission); from here on we do
    // not touch it.
    op->phase.store(op_state::idle, std::memory_order_release);
    const current_record outer = tl_current_;
    tl_current_ = {this, cell, false};
    hosting::ICLRIoCompletionManager* clr = clr_.load(std::memory_order_acquire);
    table_of(clr).OnComplete(clr, record.error, record.bytes, ov);
    // In this thread's own row: no line shared with the submitting side.
    if (!tl_current_.settled) tl_row_->add(cell);
    tl_current_ = outer;
  }

  /// True while this thread is inside OnComplete for a record of port
  /// `slot` of this engine that no Close has settled yet.
  bool inside_record_of(std::uint16_t slot) const noexcept {
    return tl_current_.owner == this && !tl_current_.settled &&
           port_table::delivered_row::slot_of(tl_current_.cell) == slot;
  }
  /// Close from inside that OnComplete: the record cannot finish before
  /// Close returns, so Close counts it delivered now.
  void settle_current() noexcept;

  // --- Which engine a thread delivers for: threads may deliver for several
  // --- engines, nested (a callback of one engine that pumps another).
  /// True on a thread that delivers this engine's records now.
  bool on_delivering_thread() const noexcept { return tl_owner_ == this; }
  /// Whom a thread delivered for before it entered this engine.
  struct outer_thread {
    const delivery* owner;
    port_table::delivered_row* row;
  };
  /// The calling thread delivers for this engine from now on, counting in
  /// `row` (its own: a notifier's, or the pump's while it owns the pump);
  /// returns what it did before (for leave_thread).
  outer_thread enter_thread(port_table::delivered_row& row) noexcept {
    const outer_thread outer{tl_owner_, tl_row_};
    tl_owner_ = this;
    tl_row_ = &row;
    return outer;
  }
  static void leave_thread(outer_thread outer) noexcept {
    tl_owner_ = outer.owner;
    tl_row_ = outer.row;
  }

 private:
  /// The runtime's vtable. Its object is an ABI object, written in C (a
  /// struct whose lpVtbl points at the table) as often as in C++, so the
  /// engine calls it through the table as the ABI lays it out, never by C++
  /// dispatch, which assumes a C++ object (-fsanitize=vptr rejects a C
  /// one). The same load and indirect call either way.
  static const hosting::ICLRIoCompletionManagerVtbl& table_of(
      hosting::ICLRIoCompletionManager* clr) noexcept {
    const hosting::ICLRIoCompletionManagerVtbl* table;
    std::memcpy(&table, static_cast<const void*>(clr), sizeof table);
    return *table;
  }

  /// The record this thread is inside OnComplete for. A record is its
  /// engine's, whose Close alone may settle it.
  struct current_record {
    const delivery* owner = nullptr;
    std::uint32_t cell = 0xFFFF'FFFF;  // where the row counts it (its port and kind)
    bool settled = false;              // Close already counted it delivered
  };

  std::atomic<hosting::ICLRIoCompletionManager*> clr_{nullptr};

  static thread_local const delivery* tl_owner_;
  static thread_local port_table::delivered_row* tl_row_;  // tl_owner_'s counts, this thread's row
  static thread_local current_record tl_current_;
};

// Inline and constant-initialized: every unit reads them without a TLS
// wrapper call.
inline thread_local const delivery* delivery::tl_owner_ = nullptr;
inline thread_local port_table::delivered_row* delivery::tl_row_ = nullptr;
inline thread_local delivery::current_record delivery::tl_current_{};

}  // namespace iocm::detail
