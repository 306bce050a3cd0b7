// Per-operation state, kept in the host area the runtime allocates right after
// each OVERLAPPED (GetHostOverlappedSize bytes), so that submitting and
// completing an operation allocate nothing.
//
// Ownership: the submitting host thread writes the fields, then publishes
// the OVERLAPPED through a poller inbox (release) -> the poller reads them and
// writes `kind` when it aborts, then publishes the completion record through
// the completion queue (release) -> a notifier reads them, marks the state
// idle and calls OnComplete; from then on the memory is the runtime's again,
// and may be freed or reused at once. Only `phase` is touched by other
// threads meanwhile (a submission that finds the OVERLAPPED in flight).
// Cancel never touches an OVERLAPPED: it is a key the poller compares with
// the addresses of the operations it holds.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

#include "iocm/completion.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "iocm/win32_errors.h"
#include "os.h"

namespace iocm::detail {

enum class op_kind : std::uint8_t { read, write, recv, send, accept, connect, nop, post, aborted };

struct op_state {
  // Upper 32 bits: a mark that InitializeHostOverlapped ran; lower: the state.
  static constexpr std::uint64_t mark = 0x10C3'A11Cull << 32;
  static constexpr std::uint64_t idle = mark | 1;
  static constexpr std::uint64_t in_flight = mark | 2;

  std::atomic<std::uint64_t> phase{idle};

  /// Moves the phase from idle to in flight: the OVERLAPPED is the engine's
  /// from now on. S_OK; ERROR_BUSY when it is in flight already;
  /// ERROR_INVALID_PARAMETER when InitializeHostOverlapped never ran on it.
  hosting::HRESULT claim() noexcept {
    std::uint64_t expected = idle;
    // acquire: whatever the previous completion wrote is ours now.
    if (phase.compare_exchange_strong(expected, in_flight, std::memory_order_acquire))
      return hosting::S_OK;
    return hosting::HRESULT_FROM_WIN32(expected == in_flight ? hosting::ERROR_BUSY
                                                             : hosting::ERROR_INVALID_PARAMETER);
  }

  op_kind kind = op_kind::nop;
  os::handle_kind handle = os::handle_kind::other;
  std::uint16_t port_slot = 0;
  std::int32_t fd = -1;
  std::uint32_t length = 0;   // bytes asked for (end-of-file needs it)
  std::uint16_t counter = 0;  // which admitted counter of the port counts it
  // The backend's own fields for this operation (backend_fields): only the
  // poller that holds the operation touches them.
  alignas(8) std::byte scratch[8]{};
  void* buffer = nullptr;  // data; the sockaddr for connect; HANDLE* for accept
  // File offset (append_offset: at the end of the file); sockaddr length
  // for connect; accept_into_*. Once the operation has its record and
  // waits for room in the queue: the record's error (record_outbox).
  std::uint64_t aux = 0;
  op_state* next = nullptr;  // a poller's own list: epoll, the descriptor's waiting
                             // operations; io_uring, those to submit again; either,
                             // the records waiting for room in the queue
};

/// The backend's own per-operation fields, kept in op_state::scratch: a
/// trivially copyable struct of the backend's (uring_poller: the cancel
/// epoch; epoll_poller: a connect's stage). start_backend_fields() begins
/// its life when the poller takes the operation; backend_fields() reads it.
template <class T>
T& start_backend_fields(op_state& op) noexcept {
  static_assert(sizeof(T) <= sizeof(op.scratch) && alignof(T) <= alignof(std::uint64_t),
                "a backend's fields fit op_state::scratch");
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                "nothing ends their life: trivial types only");
  return *::new (static_cast<void*>(op.scratch)) T{};
}
template <class T>
T& backend_fields(op_state& op) noexcept {
  return *std::launder(reinterpret_cast<T*>(op.scratch));
}
template <class T>
const T& backend_fields(const op_state& op) noexcept {
  return *std::launder(reinterpret_cast<const T*>(op.scratch));
}

/// A write's offset that means "at the end of the file", as
/// 0xFFFFFFFF:0xFFFFFFFF in Offset/OffsetHigh does on Windows.
inline constexpr std::uint64_t append_offset = ~std::uint64_t{0};

/// A poller's own FIFO of operations, linked through op_state::next: no
/// allocation, one list per operation at a time.
struct op_fifo {
  op_state* head = nullptr;
  op_state* tail = nullptr;

  bool empty() const noexcept { return head == nullptr; }
  void push(op_state* op) noexcept {
    op->next = nullptr;
    (tail != nullptr ? tail->next : head) = op;
    tail = op;
  }
  void push_front(op_state* op) noexcept {
    op->next = head;
    head = op;
    if (tail == nullptr) tail = op;
  }
  op_state* pop() noexcept {
    op_state* op = head;
    head = op->next;
    if (head == nullptr) tail = nullptr;
    op->next = nullptr;
    return op;
  }
  /// Unlinks every operation `pick` chooses and passes it to `take`, in
  /// order; returns how many.
  template <class Pick, class Take>
  std::size_t remove_if(Pick pick, Take take) {
    std::size_t n = 0;
    op_state* prev = nullptr;
    for (op_state* op = head; op != nullptr;) {
      op_state* next = op->next;
      if (!pick(*op)) {
        prev = op;
        op = next;
        continue;
      }
      (prev != nullptr ? prev->next : head) = next;
      if (tail == op) tail = prev;
      op->next = nullptr;
      ++n;
      take(op);
      op = next;
    }
    return n;
  }
};

/// For recv, aux says whether the socket receives ahead (IOCM_RECEIVE_AHEAD).
inline constexpr std::uint64_t recv_ahead = 1;
/// A receiving-ahead socket's Recv the poller gave the kernel on its own
/// (no buffers to receive ahead into): the poller's mark, set and cleared there.
inline constexpr std::uint64_t recv_single = 2;

/// For accept, aux says what buffer points to.
inline constexpr std::uint64_t accept_into_handle = 0;  // HANDLE* (IIocmHostIo)
inline constexpr std::uint64_t accept_into_int = 1;     // int* (iocm::engine)
/// Flags beside them: a listener in IOCM_ACCEPT_AHEAD mode (engine_core
/// sets it); the poller's recv_single mark (2) serves accepts too.
inline constexpr std::uint64_t accept_ahead = 4;

static_assert(sizeof(op_state) <= IOCM_HOST_OVERLAPPED_SIZE,
              "per-operation state fits in the host overlapped area");
static_assert(sizeof(hosting::OVERLAPPED) % alignof(op_state) == 0,
              "the host area after an 8-aligned OVERLAPPED is aligned for op_state");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "phase is a lock-free word");

/// The 64-bit file offset in Offset/OffsetHigh, read at submission as on
/// Windows. Null reads as 0 (the submission refuses it anyway).
inline std::uint64_t file_offset(const hosting::OVERLAPPED* ov) noexcept {
  if (ov == nullptr) return 0;
  return std::uint64_t{ov->OffsetHigh} << 32 | ov->Offset;
}

inline op_state* state_of(hosting::OVERLAPPED* ov) noexcept {
  return std::launder(
      reinterpret_cast<op_state*>(reinterpret_cast<std::byte*>(ov) + sizeof(hosting::OVERLAPPED)));
}

/// The OVERLAPPED whose host area holds `op`.
inline hosting::OVERLAPPED* overlapped_of(op_state* op) noexcept {
  return reinterpret_cast<hosting::OVERLAPPED*>(reinterpret_cast<std::byte*>(op) -
                                                sizeof(hosting::OVERLAPPED));
}

/// The completion record for an operation the kernel finished with `res`
/// (bytes or -errno, as io_uring and syscalls report it). Decides the
/// context-dependent cases: end of file on files and pipes, a socket's
/// orderly close, the socket accept4 returned. An operation that ends
/// ERROR_OPERATION_ABORTED becomes op_kind::aborted, the kind its delivery
/// is counted under (iocm_metrics::completed). Idempotent: a poller may call
/// it again for the same CQE when the queue had no room the first time.
inline completion finish(hosting::OVERLAPPED* ov, std::int32_t res) noexcept {
  using namespace hosting;
  op_state& op = *state_of(ov);
  if (op.kind == op_kind::aborted) return {ERROR_OPERATION_ABORTED, 0, ov};
  if (res < 0) {
    const std::uint32_t error = win32_from_errno(-res);
    if (error == ERROR_OPERATION_ABORTED) op.kind = op_kind::aborted;
    return {error, 0, ov};
  }
  switch (op.kind) {
    case op_kind::read:
      if (res == 0 && op.length != 0) {
        if (op.handle == os::handle_kind::file) return {ERROR_HANDLE_EOF, 0, ov};
        if (op.handle == os::handle_kind::pipe) return {ERROR_BROKEN_PIPE, 0, ov};
      }
      return {ERROR_SUCCESS, static_cast<std::uint32_t>(res), ov};
    case op_kind::accept:
      if ((op.aux & 1) == accept_into_int)
        *static_cast<int*>(op.buffer) = res;
      else
        *static_cast<HANDLE*>(op.buffer) =
            reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(res));
      return {ERROR_SUCCESS, 0, ov};
    case op_kind::connect:
    case op_kind::nop:
      return {ERROR_SUCCESS, 0, ov};
    default:
      return {ERROR_SUCCESS, static_cast<std::uint32_t>(res), ov};
  }
}

}  // namespace iocm::detail
