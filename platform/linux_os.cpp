// Linux implementations of the engine core's OS services (core/src/os.h).
#include "os.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>

namespace iocm::detail::os {

std::int32_t transfer_now(int fd, handle_kind kind, bool out, void* buffer, std::uint32_t length,
                          std::uint64_t offset) noexcept {
  ssize_t r;
  if (kind == handle_kind::socket) {
    do {
      r = out ? ::send(fd, buffer, length, MSG_DONTWAIT | MSG_NOSIGNAL)
              : ::recv(fd, buffer, length, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
  } else {
    iovec v{buffer, length};
    int flags = RWF_NOWAIT;
    off_t at = kind == handle_kind::file ? static_cast<off_t>(offset) : -1;  // pipes: no position
    if (out && kind == handle_kind::file && offset == ~std::uint64_t{0}) {
      flags |= RWF_APPEND;  // the all-ones offset: at the end of the file
      at = -1;
    }
    do {
      r = out ? ::pwritev2(fd, &v, 1, at, flags) : ::preadv2(fd, &v, 1, at, flags);
    } while (r < 0 && errno == EINTR);
  }
  return r < 0 ? -errno : static_cast<std::int32_t>(r);
}

bool would_wait(std::int32_t result) noexcept { return result == -EAGAIN || result == -EOPNOTSUPP; }

void close_descriptor(int fd) noexcept { (void)::close(fd); }

std::uint64_t socket_cookie(int fd) noexcept {
  std::uint64_t cookie = 0;
  socklen_t size = sizeof cookie;
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &size) != 0) return 0;
  return cookie;
}

bool query_handle(int fd, handle_kind& kind) noexcept {
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return false;
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
    kind = handle_kind::file;
  else if (S_ISFIFO(st.st_mode))
    kind = handle_kind::pipe;
  else if (S_ISSOCK(st.st_mode))
    kind = handle_kind::socket;
  else
    kind = handle_kind::other;
  return true;
}

// std::atomic<uint32_t> is a plain 32-bit word on Linux (static_assert in
// notifier code), so the kernel can wait on its address.
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
            nullptr, nullptr, 0);
}

void futex_wake_one(std::atomic<std::uint32_t>& word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr,
            nullptr, 0);
}

unsigned usable_cpus(int* cpus, unsigned capacity) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) {
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    const unsigned count = n > 0 ? static_cast<unsigned>(n) : 1;
    for (unsigned i = 0; i < count && i < capacity; ++i) cpus[i] = static_cast<int>(i);
    return count;
  }
  unsigned count = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    if (count < capacity) cpus[count] = cpu;
    ++count;
  }
  return count;
}

bool pin_current_thread(int cpu) noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) == 0;
}

int pinned_cpu_of_current_thread() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::pthread_getaffinity_np(::pthread_self(), sizeof set, &set) != 0 || CPU_COUNT(&set) != 1)
    return -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) return cpu;
  return -1;
}

void clear_nonblocking(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) != 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

void block_sigpipe() noexcept {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void name_current_thread(const char* name) noexcept {
  ::pthread_setname_np(::pthread_self(), name);
}

}  // namespace iocm::detail::os
