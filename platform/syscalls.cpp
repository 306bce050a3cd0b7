// The real system calls behind the poller's syscall table (syscalls.h), and,
// in the test-only build (IOCM_SYSCALL_SEAMS), the seam that replaces it.
#include "syscalls.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace iocm::detail {

namespace {

template <class R>
R or_errno(R r) noexcept {
  return r < 0 ? static_cast<R>(-errno) : r;
}

int real_uring_enter(io_uring* ring, unsigned wait_nr, bool get_events) {
  if (wait_nr != 0) return io_uring_submit_and_wait(ring, wait_nr);
  return get_events ? io_uring_submit_and_get_events(ring) : io_uring_submit(ring);
}

int real_uring_wait(io_uring* ring, unsigned timeout_ms) {
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1000000;
  io_uring_cqe* cqe = nullptr;
  const int r = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, nullptr);
  return r < 0 ? r : 0;
}

int real_connect_result(int fd) {
  int error = 0;
  socklen_t len = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) return -errno;
  if (error != 0) return -error;
  // No error yet: connected, or still connecting (a spurious edge).
  sockaddr_storage peer{};
  socklen_t plen = sizeof peer;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0)
    return errno == ENOTCONN ? -EINPROGRESS : -errno;
  return 0;
}

constexpr syscall_table real{
    .uring_setup =
        [](unsigned entries, io_uring* ring, io_uring_params* params) {
          return io_uring_queue_init_params(entries, ring, params);
        },
    .uring_enter = real_uring_enter,
    .uring_wait = real_uring_wait,
    .uring_peek = [](io_uring* ring, io_uring_cqe** cqes,
                     unsigned count) { return io_uring_peek_batch_cqe(ring, cqes, count); },
    .uring_register_buf_ring =
        [](io_uring* ring, io_uring_buf_reg* reg) {
          return io_uring_register_buf_ring(ring, reg, 0);
        },
    .epoll_create = [] { return or_errno(::epoll_create1(EPOLL_CLOEXEC)); },
    .epoll_ctl = [](int epfd, int op, int fd,
                    epoll_event* event) { return or_errno(::epoll_ctl(epfd, op, fd, event)); },
    .epoll_wait =
        [](int epfd, epoll_event* events, int max_events, int timeout_ms) {
          return or_errno(::epoll_wait(epfd, events, max_events, timeout_ms));
        },
    .eventfd = [](int flags) { return or_errno(::eventfd(0, flags)); },
    .read = [](int fd, void* buffer,
               size_t length) { return or_errno(::read(fd, buffer, length)); },
    .write = [](int fd, const void* buffer,
                size_t length) { return or_errno(::write(fd, buffer, length)); },
    .pread = [](int fd, void* buffer, size_t length,
                off_t offset) { return or_errno(::pread(fd, buffer, length, offset)); },
    .pwrite = [](int fd, const void* buffer, size_t length,
                 off_t offset) { return or_errno(::pwrite(fd, buffer, length, offset)); },
    .pwrite_append =
        [](int fd, const void* buffer, size_t length) {
          iovec v{const_cast<void*>(buffer), length};
          return or_errno(::pwritev2(fd, &v, 1, 0, RWF_APPEND));
        },
    .recv = [](int fd, void* buffer, size_t length,
               int flags) { return or_errno(::recv(fd, buffer, length, flags)); },
    .send = [](int fd, const void* buffer, size_t length,
               int flags) { return or_errno(::send(fd, buffer, length, flags)); },
    .accept4 = [](int fd, int flags) { return or_errno(::accept4(fd, nullptr, nullptr, flags)); },
    .connect = [](int fd, const sockaddr* address,
                  socklen_t length) { return or_errno(::connect(fd, address, length)); },
    .connect_result = real_connect_result,
    .fcntl = [](int fd, int command,
                int argument) { return or_errno(::fcntl(fd, command, argument)); },
};

#ifdef IOCM_SYSCALL_SEAMS
std::atomic<const syscall_table*> installed{nullptr};
#endif

}  // namespace

const syscall_table& linux_syscalls() noexcept { return real; }

#ifdef IOCM_SYSCALL_SEAMS
// The test-only build (iocm_fault_seams): a test may install a table.
const syscall_table& syscalls_in_use() noexcept {
  const syscall_table* t = installed.load(std::memory_order_acquire);
  return t != nullptr ? *t : real;
}

void use_syscalls(const syscall_table* table) noexcept {
  installed.store(table, std::memory_order_release);
}
#else
// The library hosts link: always the real table, and nothing replaces it.
const syscall_table& syscalls_in_use() noexcept { return real; }
#endif

}  // namespace iocm::detail
