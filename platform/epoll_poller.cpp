// The epoll poller, the fallback when io_uring is refused: one pinned thread
// that tries each operation when it reaches the head of its descriptor's
// queue, parks it until an edge-triggered readiness event when the kernel
// says EAGAIN, and publishes the same 16-byte records into the same queue
// lane as the io_uring poller (docs/ENGINE.md, "The epoll backend").
//
// Descriptors: Bind (on the binding thread) makes the descriptor's entry in
// the poller's table (the only allocation, and one per 1024 numbers),
// registers a socket, pipe or other pollable descriptor with epoll
// (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET) and sets O_NONBLOCK on it; a refusal
// of either is Bind's HRESULT.
// Regular files and block devices cannot be polled: their reads and writes
// run on this thread with pread/pwrite (see ENGINE.md for why not a pool).
//
// Per descriptor there are two FIFO queues, one per direction (read, recv,
// accept / write, send, connect), linked through op_state::next. Only the
// head of a queue is ever tried; when it finishes, the next one is tried at
// once, so an edge is never needed for work the kernel already has.
//
// Every call into the kernel goes through the syscall table (syscalls.h).
// EINTR is retried at once; EAGAIN parks a pollable descriptor's operation
// until its next edge (a regular file's completes with it, as io_uring's
// would); any other error completes the operation with its Win32 code. An
// epoll_wait error other than EINTR is said once through the engine's log
// and the wait is tried again after a pause.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <new>
#include <thread>

#include "fd_table.h"
#include "iocm/detail/backoff.h"
#include "iocm/win32_errors.h"
#include "op_state.h"
#include "os.h"
#include "poller.h"
#include "record_outbox.h"
#include "syscalls.h"
#include "threaded_poller.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr int max_events = 1024;
constexpr unsigned take_batch = 64;
constexpr std::uint64_t wake_key = ~std::uint64_t{0};  // epoll data of the eventfd

/// This backend's fields of an operation (op_state::scratch).
struct op_fields {
  bool connecting;  // a connect said EINPROGRESS: its answer comes as an edge
};

class epoll_poller final : public threaded_poller {
 public:
  explicit epoll_poller(poller_setup setup)
      : threaded_poller(setup, "iocm-epoll"),
        completions_(std::move(setup.completions)),
        sys_(syscalls_in_use()) {}

  ~epoll_poller() override {
    stop_if_running();
    if (epoll_fd_ >= 0) ::close(epoll_fd_);
    if (event_fd_ >= 0) ::close(event_fd_);
  }

  std::uint32_t ring_setup() const noexcept override { return 0; }
  std::uint32_t backend() const noexcept override { return IOCM_BACKEND_EPOLL; }

  hosting::HRESULT prepare_handle(int fd, binding& b) noexcept override {
    if (b.kind == os::handle_kind::file) return S_OK;  // not pollable: run on the poller
    try {
      (void)queues_.reserve(fd);
    } catch (const std::bad_alloc&) {
      return E_OUTOFMEMORY;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u64 = static_cast<std::uint32_t>(fd);
    // A number bound before may still be in the set (closed and reused
    // while a dup kept the old one alive): MOD then.
    int r = sys_.epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
    if (r == -EEXIST) r = sys_.epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
    if (r != 0) {
      if (r == -EPERM) {  // epoll cannot wait on it (e.g. /dev/null): run it like a file
        b.kind = os::handle_kind::file;
        return S_OK;
      }
      return r == -ENOMEM || r == -ENOSPC ? E_OUTOFMEMORY
                                          : HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);
    }
    // Operations are tried without blocking the poller (docs/ENGINE.md): a
    // descriptor that cannot be made non-blocking is not bound, since a
    // blocking read would stall every descriptor of this poller.
    if (const int e = make_nonblocking(fd, b.made_nonblocking); e != 0) {
      epoll_event unused{};
      sys_.epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &unused);
      return e == EBADF ? HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE)
                        : HRESULT_FROM_WIN32(win32_from_errno(e));
    }
    return S_OK;
  }

  /// Unbind and Close: the descriptor leaves the epoll set (the queued
  /// cancel aborts the operations still waiting on it).
  void forget_handle(int fd, const binding& b) noexcept override {
    if (b.kind == os::handle_kind::file) return;
    epoll_event unused{};
    sys_.epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &unused);  // ENOENT/EBADF: gone already
  }

 protected:
  void wake() noexcept override {
    const std::uint64_t one = 1;
    // EAGAIN: the counter is full, so a wake-up is pending already.
    while (sys_.write(event_fd_, &one, sizeof one) == -EINTR) {
    }
  }

 private:
  /// A descriptor's two queues of waiting operations.
  struct fd_queues {
    op_fifo dir[2];
  };

  /// Sets O_NONBLOCK on fd; *changed says whether it was clear before.
  /// 0, or the errno of the refusal.
  int make_nonblocking(int fd, bool& changed) noexcept {
    changed = false;
    const int flags = sys_.fcntl(fd, F_GETFL, 0);
    if (flags < 0) return -flags;
    if ((flags & O_NONBLOCK) != 0) return 0;
    const int r = sys_.fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (r < 0) return -r;
    changed = true;
    return 0;
  }
  enum direction : int { in = 0, out = 1 };

  static direction direction_of(op_kind k) noexcept {
    return k == op_kind::write || k == op_kind::send || k == op_kind::connect ? out : in;
  }

  bool take_direct(inbox_item item) noexcept override {
    take(item);  // tried now, on this thread; its record waits in the outbox
    return true;
  }

  void loop() override {
    backoff full_wait;
    kept_record kept;
    for (;;) {
      // Deliver where it landed: a record made since the last look is
      // delivered here (keep_for_here), the rest go to the queue.
      if (keep_for_here(outbox_, kept)) {
        (void)outbox_.publish(host_, completions_, metrics_, false);
        deliver_kept(kept);
        worked();
        continue;
      }
      if (!outbox_.publish(host_, completions_, metrics_)) {
        // The lane is full: no readiness work until it drains, but requests
        // are still taken (an Unbind waits for its cancel). Their records
        // wait in the operations themselves (complete()).
        take_inbox();
        full_wait.pause();
        continue;
      }
      full_wait.reset();
      bool progress = take_inbox() != 0;
      if (waiting_ != 0) progress = wait_events(0) != 0 || progress;
      progress = progress || !outbox_.empty();
      if (stopping() && waiting_ == 0 && outbox_.empty() && inbox_.empty()) break;
      if (progress) {
        worked();
        continue;
      }
      if (keep_polling()) continue;
      if (stopping()) {
        // Stopping with operations still waiting (Close cancelled them, so
        // only a race with their own readiness is left): keep polling.
        wait_events(1);
        continue;
      }
      if (!inbox_.prepare_to_sleep()) continue;
      wait_events(-1);  // readiness, or an eventfd write (submit, stop)
      inbox_.awake();
    }
  }

  bool pump_pass() noexcept override {
    bool progress = take_inbox() != 0;
    if (waiting_ != 0) progress = wait_events(0) != 0 || progress;
    // Records the queue has no room for yet wait here: the pump delivers,
    // then passes again.
    const bool held = !outbox_.empty();
    outbox_.publish(host_, completions_, metrics_);
    return progress || held;
  }

  void pump_sleep(std::uint32_t timeout_ms) noexcept override {
    wait_events(timeout_ms == IOCM_INFINITE
                    ? -1
                    : static_cast<int>(std::min<std::uint32_t>(timeout_ms, INT_MAX)));
  }

  hosting::HRESULT set_up() noexcept override {
    epoll_fd_ = sys_.epoll_create();
    if (epoll_fd_ < 0)
      return epoll_fd_ == -ENOMEM ? E_OUTOFMEMORY : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    event_fd_ = sys_.eventfd(EFD_CLOEXEC | EFD_NONBLOCK);
    if (event_fd_ < 0) return E_OUTOFMEMORY;
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: drained on every wake
    ev.data.u64 = wake_key;
    if (sys_.epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev) != 0) return E_OUTOFMEMORY;
    return S_OK;
  }

  /// Takes up to take_batch requests from the inbox; returns how many.
  unsigned take_inbox() {
    inbox_item items[take_batch];
    const std::size_t n = inbox_.take(items, take_batch);
    for (std::size_t i = 0; i < n; ++i) take(items[i]);
    return static_cast<unsigned>(n);
  }

  void take(inbox_item item) {
    auto* r = reinterpret_cast<poller_request*>(item & ~inbox_tag_mask);
    switch (item & inbox_tag_mask) {
      case inbox_cancel_one:
        r->answer(cancel_one(r->fd, r->key));
        return;
      case inbox_cancel_fd:
        (void)cancel_fd(static_cast<int>(item >> 3));
        return;
      case inbox_unbind:
        (void)cancel_fd(r->fd);
        r->answer(0);  // nothing on fd is left here; the last touch of r
        return;
      case inbox_cancel_all:
        r->answer(cancel_fd(r->fd));
        return;
      case inbox_carry:
        // Never made for this backend: it does not receive ahead, so its
        // Unbinds carry no bytes.
        delete reinterpret_cast<carried_bytes*>(item & ~inbox_tag_mask);
        return;
      default:
        break;
    }
    auto* ov = reinterpret_cast<OVERLAPPED*>(item);
    op_state& op = *state_of(ov);
    op.next = nullptr;
    start_backend_fields<op_fields>(op);
    if (!host_.port_open(op.port_slot)) {
      op.kind = op_kind::aborted;
      complete(op, 0);
      return;
    }
    if (op.kind == op_kind::nop) {
      complete(op, 0);
      return;
    }
    if (op.handle == os::handle_kind::file) {
      // Not pollable (a regular file, or a descriptor epoll refused): run
      // it here, complete it through the queue. Such a descriptor does not
      // say EAGAIN; if it did, the operation would fail with that error
      // rather than wait for an edge that never comes.
      complete(op, attempt(op));
      return;
    }
    // Bound, and pollable: Bind made its entry.
    op_fifo& q = queues_.find(op.fd)->dir[direction_of(op.kind)];
    const bool was_empty = q.empty();
    q.push(&op);
    ++waiting_;
    if (was_empty) drain(q);  // at the head: try it now
  }

  /// Tries the head of a queue, then the next, until one would block.
  void drain(op_fifo& q) {
    while (op_state* op = q.head) {
      const std::int32_t res = attempt(*op);
      if (res == -EAGAIN || res == -EINPROGRESS) return;  // wait for the next edge
      q.pop();
      --waiting_;
      complete(*op, res);
    }
  }

  /// Takes a waiting operation out of its queue and completes it aborted.
  void abort(op_state* op) {
    --waiting_;
    op->kind = op_kind::aborted;
    complete(*op, 0);
  }

  /// One non-blocking try: bytes (or the new descriptor, or 0) or -errno.
  std::int32_t attempt(op_state& op) {
    const bool file = op.handle == os::handle_kind::file;
    const auto offset = static_cast<off_t>(op.aux);
    bool interrupted = false;
    for (;;) {
      ssize_t r = 0;
      switch (op.kind) {
        case op_kind::read:
          r = file ? sys_.pread(op.fd, op.buffer, op.length, offset)
                   : sys_.read(op.fd, op.buffer, op.length);
          break;
        case op_kind::write:
          if (!file)
            r = sys_.write(op.fd, op.buffer, op.length);
          else if (op.aux == append_offset)
            r = sys_.pwrite_append(op.fd, op.buffer, op.length);
          else
            r = sys_.pwrite(op.fd, op.buffer, op.length, offset);
          break;
        case op_kind::recv:
          r = sys_.recv(op.fd, op.buffer, op.length, MSG_DONTWAIT);
          break;
        case op_kind::send:
          r = sys_.send(op.fd, op.buffer, op.length, MSG_DONTWAIT | MSG_NOSIGNAL);
          break;
        case op_kind::accept:
          r = sys_.accept4(op.fd, SOCK_CLOEXEC);
          break;
        case op_kind::connect:
          if (backend_fields<op_fields>(op).connecting) {
            r = sys_.connect_result(op.fd);  // -EINPROGRESS: a spurious edge, keep waiting
            break;
          }
          r = sys_.connect(op.fd, static_cast<const sockaddr*>(op.buffer),
                           static_cast<socklen_t>(op.aux));
          // After an interrupted connect, a second one says how the first
          // one goes on: still connecting, or done.
          if (r == -EALREADY && interrupted) r = -EINPROGRESS;
          if (r == -EISCONN && interrupted) r = 0;
          if (r == -EINPROGRESS)
            backend_fields<op_fields>(op).connecting = true;  // answered by EPOLLOUT
          break;
        default:
          break;
      }
      if (r != -EINTR) return static_cast<std::int32_t>(r);
      interrupted = true;
    }
  }

  [[gnu::always_inline]] void complete(op_state& op, std::int32_t res) noexcept {
    outbox_.add(op, finish(overlapped_of(&op), res));
  }

  /// Waits for readiness (timeout in ms: 0 polls, -1 sleeps) and drains the
  /// queues it concerns; returns how many events came.
  int wait_events(int timeout_ms) {
    // The loop publishes first; completions beyond the lane's room wait in
    // the outbox.
    epoll_event events[max_events];
    int n;
    do {
      n = sys_.epoll_wait(epoll_fd_, events, max_events, timeout_ms);
    } while (n == -EINTR);
    if (n < 0) {
      // Not an answer epoll_wait has for a valid call: say so, wait a
      // little and try again (the operations stay queued).
      report_failure_once(fault_wait_other, "epoll_wait", -n);
      metrics_.refused(IOCM_REFUSED_OTHER);
      after_refusal();
      return 0;
    }
    refusals_over();
    if (n != 0) metrics_.harvested(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == wake_key) {
        std::uint64_t drained;
        while (sys_.read(event_fd_, &drained, sizeof drained) == -EINTR) {
        }
        continue;
      }
      fd_queues* q = queues_.find(static_cast<int>(events[i].data.u64));
      if (q == nullptr) continue;
      const std::uint32_t e = events[i].events;
      // Errors and hang-ups wake both directions: the syscall reports them.
      if ((e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) drain(q->dir[in]);
      if ((e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) drain(q->dir[out]);
    }
    return n < 0 ? 0 : n;
  }

  /// Cancel of one operation on fd, found by its OVERLAPPED's address
  /// (only compared, never dereferenced); returns 1 if it was waiting here.
  std::uint32_t cancel_one(int fd, const void* key) {
    fd_queues* queues = queues_.find(fd);
    if (queues == nullptr) return 0;  // a file's operations never wait here
    for (op_fifo& q : queues->dir) {
      const bool was_head = q.head != nullptr && overlapped_of(q.head) == key;
      if (q.remove_if([key](op_state& op) { return overlapped_of(&op) == key; },
                      [&](op_state* op) { abort(op); }) == 0)
        continue;
      // The next one is now at the head: it may be able to go at once.
      if (was_head) drain(q);
      return 1;
    }
    return 0;
  }

  /// Cancel of everything waiting on fd; returns how many.
  std::uint32_t cancel_fd(int fd) {
    fd_queues* queues = queues_.find(fd);
    if (queues == nullptr) return 0;
    std::uint32_t n = 0;
    for (op_fifo& q : queues->dir)
      for (; !q.empty(); ++n) abort(q.pop());
    return n;
  }

  completion_queue::producer_token completions_;
  const syscall_table& sys_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  // By descriptor number (entries made at Bind, touched by this poller only).
  fd_table<fd_queues> queues_;
  std::size_t waiting_ = 0;  // operations parked on readiness
  record_outbox outbox_;     // records not yet in the lane
};

}  // namespace

std::unique_ptr<poller> make_epoll_poller(poller_setup setup) {
  return std::make_unique<epoll_poller>(std::move(setup));
}

}  // namespace iocm::detail
