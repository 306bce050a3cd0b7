// Fault injection through the pollers' syscall table (platform/syscalls.h):
// a test lists the faults it wants, installs them for the engines it creates
// next, arms them when its operations are in place, and checks afterwards
// that each fault really fired.
#pragma once

#include <doctest/doctest.h>

#include <pthread.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <thread>
#include <vector>

#include "syscalls.h"

namespace iocm_test {

using iocm::detail::syscall_table;

enum class call : unsigned {
  uring_setup,
  uring_enter,
  uring_peek,
  epoll_create,
  epoll_ctl,
  epoll_wait,
  eventfd,
  read,
  write,
  pread,
  pwrite,
  recv,
  send,
  accept4,
  connect,
  connect_result,
  fcntl,
  pwrite_append,
  uring_register_buf_ring,
};

inline constexpr std::size_t no_cap = std::numeric_limits<std::size_t>::max();

/// One fault: which calls it hits, and what they answer instead.
struct fault_spec {
  call which;
  long answer = 0;                   // what a hit call answers (-errno), unless short_to is set
  int fd = -1;                       // only calls on this descriptor; -1: any
  unsigned skip = 0;                 // matching calls let through first
  unsigned times = 1;                // hits after those; 0: every one
  unsigned every = 1;                // hit one matching call in `every` (after skip)
  std::size_t short_to = no_cap;     // I/O calls and CQEs: at most this many bytes, really done
  bool kernel_first = false;         // make the real call, then answer `answer` anyway
  const void* overlapped = nullptr;  // uring_peek: the operation whose CQE is rewritten
  const std::atomic<bool>* hold = nullptr;  // a hit call waits while *hold, then runs for real
  const char* thread = nullptr;             // only calls from the thread of this name; null: any
};

/// The faults in force; at most one injector exists at a time.
class fault_injector {
 public:
  fault_injector(std::initializer_list<fault_spec> specs) : faults_(specs.begin(), specs.end()) {
    // A failed io_uring_enter must leave the SQ as it was (syscalls.h).
    for (const fault_spec& s : specs) REQUIRE(!(s.which == call::uring_enter && s.kernel_first));
    REQUIRE(current() == nullptr);
    current() = this;
    iocm::detail::use_syscalls(&table);
  }
  ~fault_injector() {
    iocm::detail::use_syscalls(nullptr);
    current() = nullptr;
  }
  fault_injector(const fault_injector&) = delete;
  fault_injector& operator=(const fault_injector&) = delete;

  /// Faults hit only while armed (calls before do not count either).
  void arm() noexcept { armed_.store(true, std::memory_order_release); }
  void disarm() noexcept { armed_.store(false, std::memory_order_release); }
  /// How many calls fault i hit.
  unsigned fired(std::size_t i) const noexcept {
    return faults_[i].fired.load(std::memory_order_acquire);
  }
  /// How many armed calls fault i matched, hit or not.
  unsigned seen(std::size_t i) const noexcept {
    return faults_[i].seen.load(std::memory_order_acquire);
  }
  /// Waits until `count()` reaches `n`; false after 10 seconds.
  template <class Count>
  static bool wait_until(Count count, unsigned n) {
    for (int i = 0; i < 10000 && count() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return count() >= n;
  }

  static const syscall_table table;

 private:
  struct live_fault {
    live_fault(const fault_spec& s) : spec(s) {}  // NOLINT: from the list
    live_fault(const live_fault& o) : spec(o.spec) {}
    fault_spec spec;
    std::atomic<unsigned> seen{0};
    std::atomic<unsigned> fired{0};
    /// Counts one more hit, unless the fault has had all of its hits.
    bool take() noexcept {
      unsigned done = fired.load(std::memory_order_relaxed);
      do {
        if (spec.times != 0 && done >= spec.times) return false;
      } while (!fired.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel));
      return true;
    }
  };

  static fault_injector*& current() noexcept {
    static fault_injector* p = nullptr;
    return p;
  }
  static const syscall_table& real() noexcept { return iocm::detail::linux_syscalls(); }

  /// The fault that hits this call, or null.
  static const fault_spec* hit(call c, int fd) noexcept {
    fault_injector* self = current();
    if (self == nullptr || !self->armed_.load(std::memory_order_acquire)) return nullptr;
    // Every fault counts every call it matches, so a fault's skip counts
    // calls the same way whatever other faults hit; the first that hits
    // decides the answer.
    const fault_spec* chosen = nullptr;
    for (live_fault& f : self->faults_) {
      const fault_spec& s = f.spec;
      if (s.which != c || (s.fd >= 0 && s.fd != fd) || s.overlapped != nullptr) continue;
      if (s.thread != nullptr && !on_thread(s.thread)) continue;
      const unsigned n = f.seen.fetch_add(1, std::memory_order_acq_rel);
      if (chosen == nullptr && n >= s.skip && (n - s.skip) % s.every == 0 && f.take()) chosen = &s;
    }
    return chosen;
  }

  /// An I/O call of `length` bytes: what it answers.
  template <class Real>
  static ssize_t io(call c, int fd, size_t length, Real real) {
    const fault_spec* s = hit(c, fd);
    if (s == nullptr) return real(length);
    if (s->short_to != no_cap) return real(std::min(length, s->short_to));
    if (s->kernel_first) real(length);
    return s->answer;
  }
  static bool on_thread(const char* name) noexcept {
    char mine[16] = {};
    return pthread_getname_np(pthread_self(), mine, sizeof mine) == 0 &&
           std::strcmp(mine, name) == 0;
  }

  template <class Real>
  static int other(call c, int fd, Real real) {
    const fault_spec* s = hit(c, fd);
    if (s == nullptr) return real();
    if (s->hold != nullptr) {
      while (s->hold->load(std::memory_order_acquire))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return real();
    }
    if (s->kernel_first) real();
    return static_cast<int>(s->answer);
  }

  /// Rewrites the CQEs of the operations faults name.
  static unsigned peek(io_uring* ring, io_uring_cqe** cqes, unsigned count) {
    const unsigned n = real().uring_peek(ring, cqes, count);
    fault_injector* self = current();
    if (self == nullptr || !self->armed_.load(std::memory_order_acquire)) return n;
    for (live_fault& f : self->faults_) {
      const fault_spec& s = f.spec;
      if (s.which != call::uring_peek || s.overlapped == nullptr) continue;
      for (unsigned i = 0; i < n; ++i) {
        if (cqes[i]->user_data != reinterpret_cast<std::uint64_t>(s.overlapped)) continue;
        if (!f.take()) continue;
        if (s.short_to != no_cap)
          cqes[i]->res =
              std::min<std::int32_t>(cqes[i]->res, static_cast<std::int32_t>(s.short_to));
        else
          cqes[i]->res = static_cast<std::int32_t>(s.answer);
      }
    }
    return n;
  }

  std::vector<live_fault> faults_;
  std::atomic<bool> armed_{false};

  friend struct fault_table_maker;
};

struct fault_table_maker {
  using fi = fault_injector;
  static syscall_table make() {
    syscall_table t = iocm::detail::linux_syscalls();
    t.uring_setup = [](unsigned entries, io_uring* ring, io_uring_params* params) {
      return fi::other(call::uring_setup, -1,
                       [&] { return fi::real().uring_setup(entries, ring, params); });
    };
    t.uring_enter = [](io_uring* ring, unsigned wait_nr, bool get_events) {
      return fi::other(call::uring_enter, -1,
                       [&] { return fi::real().uring_enter(ring, wait_nr, get_events); });
    };
    // A pumped engine's timed wait is an io_uring_enter too.
    t.uring_wait = [](io_uring* ring, unsigned timeout_ms) {
      return fi::other(call::uring_enter, -1,
                       [&] { return fi::real().uring_wait(ring, timeout_ms); });
    };
    t.uring_peek = fi::peek;
    t.uring_register_buf_ring = [](io_uring* ring, io_uring_buf_reg* reg) {
      return fi::other(call::uring_register_buf_ring, -1,
                       [&] { return fi::real().uring_register_buf_ring(ring, reg); });
    };
    t.epoll_create = [] {
      return fi::other(call::epoll_create, -1, [] { return fi::real().epoll_create(); });
    };
    t.epoll_ctl = [](int epfd, int op, int fd, epoll_event* event) {
      return fi::other(call::epoll_ctl, fd,
                       [&] { return fi::real().epoll_ctl(epfd, op, fd, event); });
    };
    t.epoll_wait = [](int epfd, epoll_event* events, int max_events, int timeout_ms) {
      return fi::other(call::epoll_wait, -1,
                       [&] { return fi::real().epoll_wait(epfd, events, max_events, timeout_ms); });
    };
    t.eventfd = [](int flags) {
      return fi::other(call::eventfd, -1, [&] { return fi::real().eventfd(flags); });
    };
    t.read = [](int fd, void* buffer, size_t length) {
      return fi::io(call::read, fd, length,
                    [&](size_t n) { return fi::real().read(fd, buffer, n); });
    };
    t.write = [](int fd, const void* buffer, size_t length) {
      return fi::io(call::write, fd, length,
                    [&](size_t n) { return fi::real().write(fd, buffer, n); });
    };
    t.pread = [](int fd, void* buffer, size_t length, off_t offset) {
      return fi::io(call::pread, fd, length,
                    [&](size_t n) { return fi::real().pread(fd, buffer, n, offset); });
    };
    t.pwrite = [](int fd, const void* buffer, size_t length, off_t offset) {
      return fi::io(call::pwrite, fd, length,
                    [&](size_t n) { return fi::real().pwrite(fd, buffer, n, offset); });
    };
    t.recv = [](int fd, void* buffer, size_t length, int flags) {
      return fi::io(call::recv, fd, length,
                    [&](size_t n) { return fi::real().recv(fd, buffer, n, flags); });
    };
    t.send = [](int fd, const void* buffer, size_t length, int flags) {
      return fi::io(call::send, fd, length,
                    [&](size_t n) { return fi::real().send(fd, buffer, n, flags); });
    };
    t.accept4 = [](int fd, int flags) {
      return fi::other(call::accept4, fd, [&] { return fi::real().accept4(fd, flags); });
    };
    t.connect = [](int fd, const sockaddr* address, socklen_t length) {
      return fi::other(call::connect, fd, [&] { return fi::real().connect(fd, address, length); });
    };
    t.connect_result = [](int fd) {
      return fi::other(call::connect_result, fd, [&] { return fi::real().connect_result(fd); });
    };
    t.fcntl = [](int fd, int command, int argument) {
      return fi::other(call::fcntl, fd, [&] { return fi::real().fcntl(fd, command, argument); });
    };
    t.pwrite_append = [](int fd, const void* buffer, size_t length) {
      return fi::io(call::pwrite_append, fd, length,
                    [&](size_t n) { return fi::real().pwrite_append(fd, buffer, n); });
    };
    return t;
  }
};

inline const syscall_table fault_injector::table = fault_table_maker::make();

}  // namespace iocm_test
