// The system calls the pollers make, behind one table of function pointers,
// so that tests can make any of them fail, or come back short, on chosen
// calls (tests/engine/engine_fault_test.cpp). Every entry answers like a raw system call: a result
// >= 0, or -errno; none of them leaves its answer in errno.
//
// A poller reads the table in use when it is built and keeps it. The cost
// on the hot path is one indirect call per system call. Only the test-only
// build of the engine (the iocm_fault_seams library, compiled with
// IOCM_SYSCALL_SEAMS) can replace the table: a test installs its own before
// it creates an engine and restores the real one after the engine is gone.
// The library hosts link has no use_syscalls; its table is the real one.
#pragma once

#include <liburing.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>

namespace iocm::detail {

struct syscall_table {
  // --- io_uring (through liburing) ---
  /// io_uring_queue_init_params.
  int (*uring_setup)(unsigned entries, io_uring* ring, io_uring_params* params);
  /// Submits what is in the SQ and waits for `wait_nr` CQEs; with
  /// `get_events` (DEFER_TASKRUN rings) enters the kernel even with nothing
  /// to submit or wait for, so deferred completions are posted. A failure
  /// leaves the SQ as it was: the next call submits those entries.
  int (*uring_enter)(io_uring* ring, unsigned wait_nr, bool get_events);
  /// Submits what is in the SQ and waits up to timeout_ms for a CQE (a
  /// pumped engine's timed wait): 0 when one is there, -ETIME when the time
  /// ran out, or -errno.
  int (*uring_wait)(io_uring* ring, unsigned timeout_ms);
  /// io_uring_peek_batch_cqe: the CQEs ready now (the CQ ring is the
  /// process's memory, so a test may rewrite their results).
  unsigned (*uring_peek)(io_uring* ring, io_uring_cqe** cqes, unsigned count);
  /// io_uring_register_buf_ring (flags 0): a provided-buffer ring for the
  /// ring's multishot receives. 0 or -errno.
  int (*uring_register_buf_ring)(io_uring* ring, io_uring_buf_reg* reg);

  // --- epoll and the wake-up eventfd ---
  int (*epoll_create)();  // with EPOLL_CLOEXEC
  int (*epoll_ctl)(int epfd, int op, int fd, epoll_event* event);
  int (*epoll_wait)(int epfd, epoll_event* events, int max_events, int timeout_ms);
  int (*eventfd)(int flags);  // EFD_* flags; the counter starts at 0

  // --- I/O on the host's descriptors (and the eventfd's reads and writes) ---
  ssize_t (*read)(int fd, void* buffer, size_t length);
  ssize_t (*write)(int fd, const void* buffer, size_t length);
  ssize_t (*pread)(int fd, void* buffer, size_t length, off_t offset);
  ssize_t (*pwrite)(int fd, const void* buffer, size_t length, off_t offset);
  /// pwritev2 of one buffer with RWF_APPEND: at the end of the file, the
  /// descriptor's position unchanged.
  ssize_t (*pwrite_append)(int fd, const void* buffer, size_t length);
  ssize_t (*recv)(int fd, void* buffer, size_t length, int flags);
  ssize_t (*send)(int fd, const void* buffer, size_t length, int flags);
  int (*accept4)(int fd, int flags);  // no peer address
  int (*connect)(int fd, const sockaddr* address, socklen_t length);
  /// After a non-blocking connect said EINPROGRESS: 0 once connected,
  /// -EINPROGRESS while still connecting, else -errno of the failure
  /// (getsockopt SO_ERROR, then getpeername).
  int (*connect_result)(int fd);
  /// fcntl with an int argument (F_GETFL, F_SETFL): its result or -errno.
  int (*fcntl)(int fd, int command, int argument);
};

/// The real system calls.
const syscall_table& linux_syscalls() noexcept;
/// The table pollers built from now on use: the real one, unless a test
/// installed another (IOCM_SYSCALL_SEAMS only).
const syscall_table& syscalls_in_use() noexcept;
#ifdef IOCM_SYSCALL_SEAMS
/// Installs `table` for pollers built from now on (and the io_uring probe);
/// null restores the real one. `table` must outlive those pollers.
void use_syscalls(const syscall_table* table) noexcept;
#endif

}  // namespace iocm::detail
