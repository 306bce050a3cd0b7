// The io_uring poller: one pinned thread that owns one ring. It moves
// submissions from its inbox into the SQ, harvests CQEs in batches into its
// own lane of the completion queue, and sleeps in io_uring_enter when idle
// (an eventfd read in the ring wakes it).
//
// Nothing is ever dropped, and nothing holds a slot it does not need: every
// operation goes to the kernel as soon as the SQ has room for it, however
// many wait there (an idle connection's receive costs the kernel memory, not
// other connections their turn). The poller keeps taking CQEs, a batch a
// pass, also while its lane of the queue is full: records then wait in the
// operations themselves (record_outbox.h), so cancels and Unbinds are always
// answered. More completions than the CQ holds, arriving faster than the
// poller takes them, wait in the kernel's overflow list (IORING_FEAT_NODROP,
// which the engine requires) until it does.
//
// Every call into the kernel goes through the syscall table (syscalls.h).
// What the kernel may answer, and what the poller does (docs/ENGINE.md,
// "When the kernel says no"):
// - io_uring_enter: EINTR, retried at once; EAGAIN, EBUSY and ENOMEM, tried
//   again after the CQ is harvested and a pause (the SQ keeps what was not
//   submitted); EBADR and anything else, said once through the engine's
//   log, then handled like EAGAIN.
// - a CQE of -EINTR (an interrupted kernel worker): the operation is
//   submitted again, unless a cancel on its own descriptor came since (then
//   it completes aborted) or it is a connect.
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <thread>

#include "fd_table.h"
#include "iocm/detail/backoff.h"
#include "op_state.h"
#include "os.h"
#include "poller.h"
#include "record_outbox.h"
#include "syscalls.h"
#include "threaded_poller.h"
#include "uring_setup.h"

namespace iocm::detail {

using namespace hosting;

namespace {

// CQE user_data: an OVERLAPPED* (8-aligned), or one of these tags.
constexpr std::uint64_t tag_mask = 7;
constexpr std::uint64_t tag_wake = 1;    // the eventfd read
constexpr std::uint64_t tag_cancel = 2;  // a cancel nobody waits for (Close)
// (poller_request* | 3): Cancel's cancel of one operation; its answer
// (poller_request* | 4): Cancel's cancel of all on a descriptor; its answer
constexpr std::uint64_t tag_answer_one = 3;
constexpr std::uint64_t tag_answer_all = 4;
constexpr std::uint64_t tag_receive = 5;  // (fd << 3 | 5): a socket's multishot receive
constexpr std::uint64_t tag_accept = 6;   // (fd << 3 | 6): a listener's multishot accept
constexpr unsigned harvest_batch = 64;

// Receiving ahead (docs/ENGINE.md, "Receiving ahead"): each poller's
// buffers, made at its first Recv on a socket in IOCM_RECEIVE_AHEAD mode.
constexpr unsigned rx_buffer_bytes = 4096;
constexpr unsigned rx_buffer_count = 1024;  // a power of 2, below 65535
constexpr unsigned rx_socket_most = 8;      // buffers a socket fills with no Recv posted
constexpr std::uint16_t rx_group = 0;       // the buffer group id
// Accepting ahead (docs/ENGINE.md, "Accepting ahead").
constexpr unsigned accepted_count = 1024;  // connections kept per poller, below 65535
constexpr unsigned listener_most = 64;     // kept for one listener with no Accept posted

/// What a poller keeps of one socket that receives ahead, or of a listener
/// that accepts ahead. Only the poller touches it (the thread that holds
/// its token). Value-initialised: idle.
struct socket_rx {
  op_fifo recvs;                     // the host's Recvs (a listener's: Accepts) waiting, in order
  carried_bytes* carried = nullptr;  // bytes from before an Unbind: served first
  poller_request* unbinding = nullptr;  // an Unbind waiting for the receive to end
  std::int32_t end = 0;                 // what ended the stream (0: orderly close; -errno)
  std::int32_t rearm_next = 0;          // the list of sockets to restart (fd + 1; 0: last)
  std::uint32_t offset = 0;             // bytes of the first buffer already served
  std::uint16_t first = 0, last = 0;    // the buffers holding bytes, oldest first (id + 1)
  std::uint16_t held = 0;               // how many
  // A listener's connections accepted with no Accept posted, oldest first
  // (ids + 1 in the poller's accepted_), and how many.
  std::uint16_t conn_first = 0, conn_last = 0, conn_held = 0;
  bool listener = false;  // its Accepts went through here
  bool armed = false;     // a multishot receive (a listener's: accept) is in the kernel
  bool stopping = false;  // its cancel is on its way
  bool has_end = false;   // `end` waits for a Recv, after the bytes
  bool discard = false;   // its port is closing: what still arrives is dropped
  bool single = false;    // a Recv given to the kernel alone (recv_single) is in flight
  bool rearm_queued = false;
};

/// This backend's fields of an operation (op_state::scratch).
struct op_fields {
  // The descriptor's cancel count when the operation was submitted: an
  // -EINTR is retried only if no cancel on the descriptor came since.
  std::uint32_t epoch;
};
constexpr unsigned submit_batch = 64;
constexpr rlim_t fixed_most = 65536;  // entries of a poller's file table at most

class uring_poller final : public threaded_poller {
 public:
  explicit uring_poller(poller_setup setup)
      : threaded_poller(setup, "iocm-poll"),
        ring_entries_(setup.ring_entries),
        requested_setup_(setup.ring_setup),
        fixed_wanted_(setup.fixed_files),
        completions_(std::move(setup.completions)),
        sys_(syscalls_in_use()) {
    for (unsigned id = 0; id < accepted_count; ++id)
      accepted_next_[id] = static_cast<std::uint16_t>(id + 1 < accepted_count ? id + 2 : 0);
  }

  ~uring_poller() override {
    stop_if_running();
    if (ring_ready_) io_uring_queue_exit(&ring_);
    if (event_fd_ >= 0) ::close(event_fd_);
    if (rx_ring_ != nullptr) ::munmap(rx_ring_, rx_ring_bytes());
    if (rx_memory_ != nullptr) ::munmap(rx_memory_, std::size_t{rx_buffer_count} * rx_buffer_bytes);
    rx_.for_each(0, [this](int, socket_rx& rx) {
      delete rx.carried;
      while (rx.conn_first != 0) ::close(pop_accepted(rx));
      return true;
    });
  }

  std::uint32_t ring_setup() const noexcept override { return setup_used_; }
  std::uint32_t backend() const noexcept override { return IOCM_BACKEND_URING; }

  /// The descriptor's cancel count, made here where running out of memory
  /// is still an HRESULT for Bind.
  hosting::HRESULT prepare_handle(int fd, binding& b) noexcept override {
    try {
      (void)cancels_.reserve(fd);
      if (b.kind == os::handle_kind::socket) (void)rx_.reserve(fd);
      if (fixed_ready_) (void)fixed_.reserve(fd);
    } catch (const std::bad_alloc&) {
      return E_OUTOFMEMORY;
    }
    return S_OK;
  }

  inbox_item registration(int fd) const noexcept override {
    return fixed_ready_ && fd < fixed_size_
               ? static_cast<inbox_item>(static_cast<std::uint32_t>(fd)) << 3 | inbox_register
               : 0;
  }

 protected:
  void wake() noexcept override {
    const std::uint64_t one = 1;
    // Another failure means the counter is about to overflow: a wake-up is
    // already pending, which is all we need.
    while (sys_.write(event_fd_, &one, sizeof one) == -EINTR) {
    }
  }

 private:
  bool defer_taskrun() const noexcept { return setup_used_ == IOCM_RING_DEFER_TASKRUN; }

  /// The inbox into the SQ, the CQ into the queue; true when anything moved.
  /// With `kept` (the poller's own thread), a record may stay out of the
  /// queue for the thread to deliver itself (keep_for_here); *kept_one
  /// says whether one did.
  bool pass(kept_record* kept = nullptr, bool* kept_one = nullptr) {
    if (!wake_armed_ && !stopping() && io_uring_sq_space_left(&ring_) != 0) arm_wake_read();
    bool progress = take_inbox() != 0;
    progress = harvest() != 0 || progress;
    const bool keep = kept != nullptr && keep_for_here(outbox_, *kept);
    if (kept_one != nullptr) *kept_one = keep;
    publish(!keep);
    return progress;
  }

  /// The records made so far into the lane; lane_full_ while some wait.
  void publish(bool wake = true) noexcept {
    lane_full_ = !outbox_.publish(host_, completions_, metrics_, wake);
  }

  bool pump_pass() noexcept override {
    bool progress = pass();
    flush();                                // what the pass prepared goes to the kernel now
    progress = harvest() != 0 || progress;  // and what finished inline comes back
    publish();
    return progress || lane_full_;
  }

  void pump_sleep(std::uint32_t timeout_ms) noexcept override {
    // Without the wake-up read armed (no SQ room for it) a submitter could
    // not end the wait: the pump passes again instead.
    if (!wake_armed_) return;
    if (timeout_ms == IOCM_INFINITE) {
      enter_kernel(true);
      return;
    }
    int r;
    do {
      r = sys_.uring_wait(&ring_, timeout_ms);
    } while (r == -EINTR);
    if (r < 0 && r != -ETIME) after_refusal();  // the next pass's flush says why
  }

  bool take_direct(inbox_item item) noexcept override {
    if (io_uring_sq_space_left(&ring_) == 0) return false;
    take(item);  // an operation: one SQE, submitted when the thread comes back
    return true;
  }

  void loop() override {
    backoff full_wait;
    kept_record kept;
    for (;;) {
      bool kept_one;
      const bool progress = pass(&kept, &kept_one);
      if (kept_one) {
        // Deliver where it landed: the kernel gets what the pass prepared
        // first, then OnComplete runs here; what it submits goes straight
        // into the SQ, and to the kernel with the next flush.
        flush();
        deliver_kept(kept);
        worked();
        flush();
        continue;
      }
      if (stopping() && inflight_ == (wake_armed_ ? 1u : 0u) && waiting_.empty() &&
          rearm_head_ == 0 && outbox_.empty() && inbox_.empty())
        break;
      if (lane_full_) {
        // Backpressure: notifiers must drain our lane first. Keep the kernel
        // fed and the CQEs coming, give the core away.
        flush();
        full_wait.pause();
        continue;
      }
      full_wait.reset();
      if (progress) {
        worked();
        flush();
        continue;
      }
      if (!wake_armed_) {
        // Stopping (the wake-up read is not re-armed): wait for the CQEs
        // still owed, e.g. of the cancels Close sent. (Or the SQ had no
        // room for it: a CQE comes, or the next pass submits.)
        if (inflight_ != 0) enter_kernel(true);
        continue;
      }
      if (keep_polling()) continue;
      if (!inbox_.prepare_to_sleep()) continue;
      enter_kernel(true);  // an eventfd write (submit, stop) ends it
      inbox_.awake();
    }
    // Only the wake-up read is left: cancel it so the ring exits cleanly.
    if (io_uring_sqe* sqe = wake_armed_ ? io_uring_get_sqe(&ring_) : nullptr) {
      io_uring_prep_cancel64(sqe, tag_wake, 0);
      sqe->user_data = tag_cancel;
      int r;
      do {
        r = sys_.uring_enter(&ring_, 1, false);
      } while (r == -EINTR);
    }
  }

  /// Enters the kernel only if it has something for us: SQEs to submit, or
  /// operations (besides the wake-up read) whose completions may be waiting
  /// there. With DEFER_TASKRUN every entry is a syscall, even an empty one.
  void flush() {
    if (io_uring_sq_ready(&ring_) != 0 || (defer_taskrun() && inflight_ > (wake_armed_ ? 1u : 0u)))
      enter_kernel(false);
  }

  /// Submits what is in the SQ; with wait, sleeps until a CQE arrives.
  /// With DEFER_TASKRUN an entry also runs the deferred completions.
  void enter_kernel(bool wait) {
    int r;
    do {
      r = sys_.uring_enter(&ring_, wait ? 1 : 0, defer_taskrun());
    } while (r == -EINTR);
    if (r >= 0) {
      refusals_over();
      if (acks_ != nullptr && io_uring_sq_ready(&ring_) == 0) give_acks();
      return;
    }
    // The SQ still holds what was not submitted; the loop harvests (the
    // kernel may want CQEs reaped first) and comes back here.
    metrics_.refused(r == -EAGAIN || r == -EBUSY || r == -ENOMEM ? IOCM_REFUSED_BUSY
                     : r == -EBADR                               ? IOCM_REFUSED_DROPPED
                                                                 : IOCM_REFUSED_OTHER);
    switch (r) {
      case -EAGAIN:  // short of resources for now
      case -EBUSY:   // completions must be reaped first
        break;
      case -ENOMEM:
        report_once(fault_enter_nomem, IOCM_LOG_WARNING,
                    "io_uring_enter ran out of memory (ENOMEM); retrying until it succeeds");
        break;
      case -EBADR:
        // The kernel lost a CQE it could not store: its CQ was full and it
        // had no memory left for the overflow list. Any CQE posted then may
        // be the lost one; nothing can tell which: say so, go on harvesting.
        report_once(fault_enter_dropped, IOCM_LOG_ERROR,
                    "io_uring_enter says the kernel dropped completions (EBADR: its CQ overflowed "
                    "and it had no memory to keep the excess); an operation whose completion was "
                    "among them will never complete; carrying on");
        break;
      default:
        report_failure_once(fault_enter_other, "io_uring_enter", -r);
        break;
    }
    after_refusal();  // the kernel keeps refusing: do not spin hot
  }

  void arm_wake_read() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_read(sqe, event_fd_, &wake_buffer_, sizeof wake_buffer_, 0);
    sqe->user_data = tag_wake;
    ++inflight_;
    wake_armed_ = true;
  }

  /// Every SQE prepared so far is in the kernel: Unbinds waiting on their
  /// cancels may return.
  void give_acks() noexcept {
    while (poller_request* ack = acks_) {
      acks_ = ack->next;
      ack->answer(0);  // the last touch: the request lives on Unbind's stack
    }
  }

  /// Moves requests into the SQ, one SQE each at most; returns how many it
  /// handled. Operations to submit again go first.
  unsigned take_inbox() {
    unsigned sqes = io_uring_sq_space_left(&ring_);
    unsigned handled = 0;
    while (rearm_head_ != 0 && sqes != 0) {
      const int fd = rearm_head_ - 1;
      socket_rx& rx = *rx_.find(fd);
      rearm_head_ = rx.rearm_next;
      rx.rearm_next = 0;
      rx.rearm_queued = false;
      if (rx.armed || rx.single || rx.unbinding != nullptr || rx.recvs.empty()) continue;
      restart(fd, rx);
      --sqes;
      ++handled;
    }
    while (!waiting_.empty() && sqes != 0) {
      prepare_operation(*waiting_.pop());
      --sqes;
      ++handled;
    }
    // Two SQEs an item at most: a cancel on a socket that receives ahead
    // also cancels its receive by its user_data (in a ring of one free SQE,
    // one item, whose second cancel is skipped: cancel_all_on).
    inbox_item items[submit_batch];
    const unsigned most = sqes == 1 ? 1 : sqes / 2;
    const std::size_t n = inbox_.take(items, std::min(most, submit_batch));
    for (std::size_t i = 0; i < n; ++i) take(items[i]);
    return handled + static_cast<unsigned>(n);
  }

  /// A descriptor's cancel count; 0 for one never bound here.
  std::uint32_t cancels_on(int fd) const noexcept {
    const std::uint32_t* c = cancels_.find(fd);
    return c != nullptr ? *c : 0;
  }
  /// A cancel on fd is on its way: an -EINTR of an operation on fd
  /// submitted before it is not retried (to_retry).
  void count_cancel(int fd) noexcept {
    if (std::uint32_t* c = cancels_.find(fd)) ++*c;
  }

  /// Operations on fd still waiting here to be submitted again complete
  /// aborted, without the kernel; returns how many.
  std::uint32_t abort_waiting_on(int fd) noexcept {
    return static_cast<std::uint32_t>(waiting_.remove_if(
        [fd](const op_state& op) { return op.fd == fd; }, [this](op_state* op) { abort(*op); }));
  }
  void abort(op_state& op) noexcept {
    op.kind = op_kind::aborted;
    outbox_.add(op, finish(overlapped_of(&op), 0));
  }

  /// A CQE the kernel's worker could not finish because it was interrupted:
  /// the operation goes to the kernel again, unless a cancel on its own
  /// descriptor (Cancel, Unbind, Close) came since it was submitted: the
  /// interruption may be that cancel, and a retry would outlive it. A
  /// connect is not retried either: a second connect on a socket already
  /// connecting fails.
  bool to_retry(const op_state& op, std::int32_t res) const noexcept {
    return res == -EINTR && op.kind != op_kind::nop && op.kind != op_kind::aborted &&
           op.kind != op_kind::connect && backend_fields<op_fields>(op).epoch == cancels_on(op.fd);
  }

  /// Cancel, Close and Unbind's cancel of everything on fd, in the kernel
  /// (user_data says whose CQE it is); the operations still waiting here
  /// complete aborted. Returns how many were waiting.
  std::uint32_t cancel_all_on(int fd, std::uint64_t user_data) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room was checked
    io_uring_prep_cancel_fd(
        sqe, fd, IORING_ASYNC_CANCEL_ALL | (is_fixed(fd) ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
    sqe->user_data = user_data;
    ++inflight_;
    count_cancel(fd);
    std::uint32_t n = abort_waiting_on(fd);
    if (socket_rx* rx = rx_.find(fd)) {
      while (!rx->recvs.empty()) {
        abort(*rx->recvs.pop());
        ++n;
      }
      // Its receive holds the socket open: a host that closed the socket
      // before this (without Unbind) leaves a number the cancel above
      // cannot find. Its user_data finds it.
      if (rx->armed && !rx->stopping && io_uring_sq_space_left(&ring_) != 0)
        stop_receiving(fd, *rx);
    }
    return n;
  }

  /// Cancel of one operation: its OVERLAPPED's address is only a key, for
  /// the operations waiting here and, through user_data, for the kernel.
  void cancel_one(poller_request& r) noexcept {
    count_cancel(r.fd);
    const void* key = r.key;
    const auto is_key = [key](op_state& op) { return overlapped_of(&op) == key; };
    const auto aborted = [this](op_state* op) { abort(*op); };
    std::size_t here = waiting_.remove_if(is_key, aborted);
    if (socket_rx* rx = rx_.find(r.fd); here == 0 && rx != nullptr)
      here = rx->recvs.remove_if(is_key, aborted);
    if (here != 0) {
      r.answer(1);
      return;
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room was checked
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(key), 0);
    sqe->user_data = reinterpret_cast<std::uint64_t>(&r) | tag_answer_one;
    ++inflight_;
  }

  /// One inbox request.
  void take(inbox_item item) noexcept {
    auto* r = reinterpret_cast<poller_request*>(item & ~inbox_tag_mask);
    switch (item & inbox_tag_mask) {
      case inbox_cancel_one:
        cancel_one(*r);
        return;
      case inbox_cancel_fd: {
        // Close: the port's sockets are done with; bytes received ahead go.
        const int fd = static_cast<int>(item >> 3);
        (void)cancel_all_on(fd, tag_cancel);
        if (socket_rx* rx = rx_.find(fd)) drop_received(*rx);
        unregister(fd);
        return;
      }
      case inbox_unbind: {
        // The kernel looks fd up when it gets the SQE: Unbind waits until
        // then (acks are given once the SQ is submitted). A socket that
        // receives ahead: until its receive has ended, and what it received
        // goes with the answer (carried_bytes).
        (void)cancel_all_on(r->fd, tag_cancel);
        const bool was_fixed = unregister(r->fd);
        socket_rx* rx = rx_.find(r->fd);
        if (rx != nullptr && (rx->armed || rx->single)) {
          rx->unbinding = r;
          return;
        }
        if (rx != nullptr) carry_received(*rx, *r);
        if (was_fixed) {
          r->answer(0);  // its cancel is in the kernel, and the table lets go of fd
          return;
        }
        r->next = acks_;
        acks_ = r;
        return;
      }
      case inbox_cancel_all: {
        socket_rx* rx = rx_.find(r->fd);
        r->own = rx != nullptr && rx->armed ? 1 : 0;  // (a single Recv is the host's)
        r->found = cancel_all_on(r->fd, reinterpret_cast<std::uint64_t>(r) | tag_answer_all);
        return;
      }
      case inbox_register: {
        int fd = static_cast<int>(item >> 3);
        const int done = io_uring_register_files_update(&ring_, static_cast<unsigned>(fd), &fd, 1);
        if (done == 1) {
          *fixed_.find(fd) = true;
        } else {
          metrics_.refused(IOCM_REFUSED_OTHER);
          report_refusal_once(fault_fixed_files, IOCM_LOG_WARNING, "io_uring_register_files_update",
                              done < 0 ? -done : EIO, "such descriptors are used unregistered");
        }
        return;
      }
      case inbox_carry: {
        auto* c = reinterpret_cast<carried_bytes*>(item & ~inbox_tag_mask);
        socket_rx& rx = *rx_.find(c->fd);  // made by prepare_handle, before this was queued
        for (const int socket : c->sockets) keep_accepted(rx, socket);
        c->sockets.clear();
        rx.listener = rx.listener || rx.conn_first != 0;
        delete rx.carried;  // (none: an Unbind took it)
        rx.carried = nullptr;
        if (c->bytes.size() == c->taken)
          delete c;
        else
          rx.carried = c;
        return;
      }
      default: {
        op_state& op = *state_of(reinterpret_cast<OVERLAPPED*>(item));
        if (op.kind == op_kind::recv || op.kind == op_kind::accept) {
          socket_rx* rx = rx_.find(op.fd);
          if (rx != nullptr && (wants_ahead(op) || receiving(*rx))) {
            take_waiting(op, *rx);
            return;
          }
        }
        prepare_operation(op);
        return;
      }
    }
  }

  // --- Receiving ahead (docs/ENGINE.md, "Receiving ahead"). A socket in
  // --- IOCM_RECEIVE_AHEAD mode has one multishot receive in the kernel that
  // --- fills this poller's buffers; the host's Recvs wait here and are
  // --- served from them, in order. Every step uses at most one SQE.

  /// True while the socket has anything of receiving ahead going: a Recv of
  /// a socket that left the mode still goes through here until it is over.
  static bool receiving(const socket_rx& rx) noexcept {
    return rx.armed || rx.single || rx.first != 0 || rx.carried != nullptr || !rx.recvs.empty() ||
           rx.has_end || rx.conn_first != 0;
  }

  // --- Registered files (IOCM_FIXED_FILES): a bound descriptor's index in
  // --- the ring's file table is its own number.
  bool is_fixed(int fd) const noexcept {
    if (!fixed_ready_) return false;
    const bool* f = fixed_.find(fd);
    return f != nullptr && *f;
  }
  /// Unbind or Close of fd: once its cancel is in the kernel (submitted
  /// now: the cancel names the table's entry), the table lets go of the
  /// file, so that the host's close really closes it. True if fd was
  /// registered.
  bool unregister(int fd) noexcept {
    if (!is_fixed(fd)) return false;
    while (io_uring_sq_ready(&ring_) != 0) {
      enter_kernel(false);
      if (io_uring_sq_ready(&ring_) != 0) (void)harvest();  // the kernel wants CQEs reaped first
    }
    int none = -1;
    (void)io_uring_register_files_update(&ring_, static_cast<unsigned>(fd), &none, 1);
    *fixed_.find(fd) = false;
    return true;
  }

  /// A Recv of a socket in IOCM_RECEIVE_AHEAD mode, an Accept of a listener
  /// in IOCM_ACCEPT_AHEAD mode.
  static bool wants_ahead(const op_state& op) noexcept {
    return (op.aux & (op.kind == op_kind::accept ? accept_ahead : recv_ahead)) != 0;
  }

  /// A Recv (Accept) that goes through the socket's state: served from what
  /// is kept, or it waits there for the kernel.
  void take_waiting(op_state& op, socket_rx& rx) noexcept {
    if (op.kind == op_kind::accept) rx.listener = true;
    if (!host_.port_open(op.port_slot)) {
      op.aux &= ~accept_ahead;
      prepare_operation(op);  // completes aborted, as every operation does then
      return;
    }
    rx.recvs.push(&op);
    serve(rx);
    if (rx.recvs.empty()) return;
    if (!rx.armed && !rx.single) {
      restart(op.fd, rx);
    } else if (rx.armed && !rx.stopping && !wants_ahead(*rx.recvs.head)) {
      stop_receiving(op.fd, rx);  // the host turned the mode off
    }
  }

  /// Gives the waiting Recvs what the socket holds, oldest first: bytes
  /// carried over an Unbind, then the buffers, then how the stream ended;
  /// a listener's Accepts, the connections kept.
  void serve(socket_rx& rx) noexcept {
    if (rx.listener) {
      while (!rx.recvs.empty() && rx.conn_first != 0)
        complete_accept(*rx.recvs.pop(), pop_accepted(rx));
      return;
    }
    while (!rx.recvs.empty()) {
      op_state& op = *rx.recvs.head;
      std::int32_t res = 0;
      if (rx.carried != nullptr || rx.first != 0) {
        // (A Recv of 0 bytes, the zero-byte read that waits for data,
        // completes with 0 and leaves the bytes.)
        res =
            static_cast<std::int32_t>(copy_out(rx, static_cast<std::byte*>(op.buffer), op.length));
      } else if (rx.has_end) {
        res = rx.end;
        if (op.length != 0) rx.has_end = false;  // once: a later Recv asks the kernel again
      } else {
        return;
      }
      rx.recvs.pop();
      outbox_.add(op, finish(overlapped_of(&op), res));
    }
  }

  std::uint32_t copy_out(socket_rx& rx, std::byte* to, std::uint32_t length) noexcept {
    std::uint32_t n = 0;
    if (carried_bytes* c = rx.carried) {
      const std::size_t k = std::min<std::size_t>(length, c->bytes.size() - c->taken);
      std::memcpy(to, c->bytes.data() + c->taken, k);
      c->taken += k;
      n = static_cast<std::uint32_t>(k);
      if (c->taken == c->bytes.size()) {
        delete c;
        rx.carried = nullptr;
      }
    }
    while (n < length && rx.first != 0) {
      const unsigned id = rx.first - 1u;
      const std::uint32_t k = std::min(length - n, rx_bytes_[id] - rx.offset);
      std::memcpy(to + n, rx_buffer(id) + rx.offset, k);
      n += k;
      rx.offset += k;
      if (rx.offset == rx_bytes_[id]) pop_buffer(rx);
    }
    return n;
  }

  /// The socket's first buffer is spent: back to the kernel.
  void pop_buffer(socket_rx& rx) noexcept {
    const unsigned id = rx.first - 1u;
    rx.first = rx_next_[id];
    if (rx.first == 0) rx.last = 0;
    rx.offset = 0;
    --rx.held;
    give_back(id);
  }

  /// The head Recv (Accept) needs the kernel: one multishot receive
  /// (accept) for a socket in the mode while buffers (places) are left,
  /// else that Recv (Accept) alone, as without the mode. Room for one SQE
  /// was checked.
  void restart(int fd, socket_rx& rx) noexcept {
    while (!rx.recvs.empty()) {
      op_state& head = *rx.recvs.head;
      if (!host_.port_open(head.port_slot)) {
        abort(*rx.recvs.pop());
        continue;
      }
      const bool ahead =
          wants_ahead(head) &&
          (rx.listener ? accept_state_ != rx_pool_state::refused && accepted_free_ != 0
                       : rx_pool_ready() && rx_in_kernel_ != 0);
      if (!ahead) {
        rx.recvs.pop();
        head.aux = (head.aux & ~accept_ahead) | recv_single;
        rx.single = true;
        prepare_operation(head);
        return;
      }
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (rx.listener) {
        io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC);
      } else {
        io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = rx_group;
      }
      if (is_fixed(fd)) sqe->flags |= IOSQE_FIXED_FILE;
      sqe->user_data = multishot_key(fd, rx);
      ++inflight_;
      rx.armed = true;
      return;
    }
  }

  /// The user_data of fd's multishot receive (accept).
  static std::uint64_t multishot_key(int fd, const socket_rx& rx) noexcept {
    return static_cast<std::uint64_t>(fd) << 3 | (rx.listener ? tag_accept : tag_receive);
  }

  /// Cancels the socket's multishot receive (it holds enough with no Recv
  /// posted, or the mode was turned off). Room for one SQE was checked.
  void stop_receiving(int fd, socket_rx& rx) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_cancel64(sqe, multishot_key(fd, rx), 0);
    sqe->user_data = tag_cancel;
    ++inflight_;
    rx.stopping = true;
  }

  /// A CQE of fd's multishot receive.
  void received(int fd, std::int32_t res, std::uint32_t flags) noexcept {
    socket_rx& rx = *rx_.find(fd);
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (more) ++inflight_;  // harvest counts every CQE; only the last ends the request
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
      --rx_in_kernel_;
      const unsigned id = flags >> IORING_CQE_BUFFER_SHIFT;
      if (res > 0 && !rx.discard) {
        rx_works_ = true;
        rx_bytes_[id] = static_cast<std::uint32_t>(res);
        rx_next_[id] = 0;
        (rx.last != 0 ? rx_next_[rx.last - 1u] : rx.first) = static_cast<std::uint16_t>(id + 1);
        rx.last = static_cast<std::uint16_t>(id + 1);
        ++rx.held;
      } else {
        give_back(id);
      }
    }
    if (!more) {
      rx.armed = false;
      rx.stopping = false;
      rx.discard = false;
      if (res == -EINVAL && !rx_works_) {
        // A kernel without multishot receive (before 6.0): Recvs go to it
        // one by one from now on.
        rx_state_ = rx_pool_state::refused;
        report_once(fault_receive_ahead, IOCM_LOG_INFO,
                    "this kernel has no multishot receive; IOCM_RECEIVE_AHEAD sockets receive "
                    "one Recv at a time");
      } else if (res == -ENOBUFS) {
        metrics_.refused(IOCM_REFUSED_NO_BUFFERS);
      } else if (res == 0 || (res < 0 && res != -ECANCELED && res != -EINTR)) {
        rx.has_end = true;  // an orderly close or an error, after the bytes before it
        rx.end = res;
      }
    }
    serve(rx);
    if (!more) {
      receiving_ended(fd, rx);
    } else if (rx.recvs.empty() && rx.held >= rx_socket_most && !rx.stopping &&
               io_uring_sq_space_left(&ring_) != 0) {
      stop_receiving(fd, rx);  // enough kept for a host that is not reading
    }
  }

  /// Nothing of fd's receiving is in the kernel any more: an Unbind waiting
  /// for that takes the bytes; Recvs still waiting start it again.
  void receiving_ended(int fd, socket_rx& rx) noexcept {
    if (rx.armed || rx.single) return;
    if (poller_request* r = rx.unbinding) {
      rx.unbinding = nullptr;
      carry_received(rx, *r);
      if (io_uring_sq_ready(&ring_) == 0) {
        r->answer(0);  // its cancel went to the kernel before this CQE came
      } else {
        r->next = acks_;
        acks_ = r;
      }
      return;
    }
    if (rx.recvs.empty()) return;
    if (io_uring_sq_space_left(&ring_) != 0) {
      restart(fd, rx);
    } else if (!rx.rearm_queued) {  // the next pass, when the SQ has room
      rx.rearm_queued = true;
      rx.rearm_next = 0;
      if (rearm_head_ == 0)
        rearm_head_ = fd + 1;
      else
        rx_.find(rearm_tail_ - 1)->rearm_next = fd + 1;
      rearm_tail_ = fd + 1;
    }
  }

  /// A Recv given to the kernel alone (recv_single) has its CQE.
  void single_done(op_state& op, std::int32_t res) noexcept {
    op.aux &= ~recv_single;
    socket_rx& rx = *rx_.find(op.fd);
    rx.single = false;
    if (to_retry(op, res)) {
      rx.recvs.push_front(&op);  // interrupted: first again
    } else {
      if (res == -EINTR) op.kind = op_kind::aborted;
      outbox_.add(op, finish(overlapped_of(&op), res));
    }
    receiving_ended(op.fd, rx);
  }

  /// Unbind: the bytes no Recv took go with the request, for a later Bind.
  void carry_received(socket_rx& rx, poller_request& r) noexcept {
    rx.has_end = false;   // the kernel says it again to a later Recv
    rx.listener = false;  // the number may come back as another kind of socket
    if (rx.carried == nullptr && rx.first == 0 && rx.conn_first == 0) return;
    std::unique_ptr<carried_bytes> c(new (std::nothrow) carried_bytes);
    try {
      if (c != nullptr) {
        c->sockets.reserve(rx.conn_held);
        while (rx.conn_first != 0) c->sockets.push_back(pop_accepted(rx));
      }
      if (c != nullptr && rx.carried != nullptr)
        c->bytes.append(rx.carried->bytes, rx.carried->taken);
      for (unsigned id = rx.first; c != nullptr && id != 0; id = rx_next_[id - 1u]) {
        const std::uint32_t from = id == rx.first ? rx.offset : 0;
        c->bytes.append(reinterpret_cast<const char*>(rx_buffer(id - 1u)) + from,
                        rx_bytes_[id - 1u] - from);
      }
    } catch (const std::bad_alloc&) {
      c.reset();
    }
    if (c == nullptr)
      report_once(fault_carry_nomem, IOCM_LOG_ERROR,
                  "Unbind: no memory to keep what was received or accepted ahead on a socket; "
                  "it is lost");
    r.carried = std::move(c);
    drop_received(rx);
  }

  /// Gives every buffer of the socket back, forgets carried bytes and the
  /// end; what its receive still brings is dropped too.
  void drop_received(socket_rx& rx) noexcept {
    while (rx.first != 0) pop_buffer(rx);
    while (rx.conn_first != 0) ::close(pop_accepted(rx));
    delete rx.carried;
    rx.carried = nullptr;
    rx.has_end = false;
    rx.listener = false;
    if (rx.armed) rx.discard = true;
  }

  // --- Accepting ahead (docs/ENGINE.md, "Accepting ahead"): one multishot
  // --- accept per listener; connections no Accept waits for are kept in
  // --- accepted_ (at most listener_most per listener before it pauses).

  void complete_accept(op_state& op, std::int32_t res) noexcept {
    op.aux &= ~(accept_ahead | recv_single);
    outbox_.add(op, finish(overlapped_of(&op), res));
  }

  /// A CQE of fd's multishot accept.
  void accepted(int fd, std::int32_t res, std::uint32_t flags) noexcept {
    socket_rx& rx = *rx_.find(fd);
    const bool more = (flags & IORING_CQE_F_MORE) != 0;
    if (more) ++inflight_;  // harvest counts every CQE; only the last ends the request
    if (res >= 0) {
      accept_state_ = rx_pool_state::ready;
      if (rx.discard)
        ::close(res);  // its port is closing: as the kernel closes a listener's backlog
      else if (!rx.recvs.empty())
        complete_accept(*rx.recvs.pop(), res);
      else
        keep_accepted(rx, res);
    }
    if (!more) {
      rx.armed = false;
      rx.stopping = false;
      rx.discard = false;
      if (res == -EINVAL && accept_state_ == rx_pool_state::unmade) {
        accept_state_ = rx_pool_state::refused;  // before Linux 5.19
        report_once(fault_accept_ahead, IOCM_LOG_INFO,
                    "this kernel has no multishot accept; IOCM_ACCEPT_AHEAD listeners accept "
                    "one Accept at a time");
      } else if (res < 0 && res != -ECANCELED && res != -EINTR && !rx.recvs.empty()) {
        complete_accept(*rx.recvs.pop(), res);  // e.g. EMFILE: the Accept says so
      }
      receiving_ended(fd, rx);
    } else if (rx.recvs.empty() && !rx.stopping && io_uring_sq_space_left(&ring_) != 0 &&
               (rx.conn_held >= listener_most || accepted_free_ == 0)) {
      stop_receiving(fd, rx);  // enough kept: the kernel's backlog holds the rest
    }
  }

  /// Keeps a connection accepted with no Accept waiting. With none of the
  /// poller's places left (its listeners were each paused at listener_most,
  /// and more came while their cancels were on their way), it is closed,
  /// said once: its peer sees a reset, as with a full backlog.
  void keep_accepted(socket_rx& rx, int socket) noexcept {
    if (accepted_free_ == 0) {
      ::close(socket);
      report_once(fault_accept_full, IOCM_LOG_ERROR,
                  "accepting ahead: no place left for a connection accepted with no Accept "
                  "posted; it was closed");
      return;
    }
    const unsigned id = accepted_free_ - 1u;
    accepted_free_ = accepted_next_[id];
    accepted_fd_[id] = socket;
    accepted_next_[id] = 0;
    (rx.conn_last != 0 ? accepted_next_[rx.conn_last - 1u] : rx.conn_first) =
        static_cast<std::uint16_t>(id + 1);
    rx.conn_last = static_cast<std::uint16_t>(id + 1);
    ++rx.conn_held;
  }

  int pop_accepted(socket_rx& rx) noexcept {
    const unsigned id = rx.conn_first - 1u;
    rx.conn_first = accepted_next_[id];
    if (rx.conn_first == 0) rx.conn_last = 0;
    --rx.conn_held;
    accepted_next_[id] = accepted_free_;
    accepted_free_ = static_cast<std::uint16_t>(id + 1);
    return accepted_fd_[id];
  }

  // --- The poller's buffers: a provided-buffer ring (group rx_group).
  enum class rx_pool_state : std::uint8_t { unmade, ready, refused };
  static std::size_t rx_ring_bytes() noexcept {
    return std::size_t{rx_buffer_count} * sizeof(io_uring_buf);
  }
  std::byte* rx_buffer(unsigned id) const noexcept {
    return rx_memory_ + std::size_t{id} * rx_buffer_bytes;
  }
  void give_back(unsigned id) noexcept {
    io_uring_buf_ring_add(rx_ring_, rx_buffer(id), rx_buffer_bytes, static_cast<unsigned short>(id),
                          io_uring_buf_ring_mask(rx_buffer_count), 0);
    io_uring_buf_ring_advance(rx_ring_, 1);
    ++rx_in_kernel_;
  }

  /// Makes and registers the buffers at the first use; false when the
  /// kernel refuses them (said once; Recvs then go one by one).
  bool rx_pool_ready() noexcept {
    if (rx_state_ != rx_pool_state::unmade) return rx_state_ == rx_pool_state::ready;
    rx_state_ = rx_pool_state::refused;
    void* ring = ::mmap(nullptr, rx_ring_bytes(), PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void* memory = ::mmap(nullptr, std::size_t{rx_buffer_count} * rx_buffer_bytes,
                          PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int r = -ENOMEM;
    if (ring != MAP_FAILED && memory != MAP_FAILED) {
      io_uring_buf_reg reg{};
      reg.ring_addr = reinterpret_cast<std::uint64_t>(ring);
      reg.ring_entries = rx_buffer_count;
      reg.bgid = rx_group;
      r = sys_.uring_register_buf_ring(&ring_, &reg);
    }
    if (r < 0) {
      metrics_.refused(IOCM_REFUSED_OTHER);
      if (ring != MAP_FAILED) ::munmap(ring, rx_ring_bytes());
      if (memory != MAP_FAILED) ::munmap(memory, std::size_t{rx_buffer_count} * rx_buffer_bytes);
      report_refusal_once(fault_receive_ahead, IOCM_LOG_INFO,
                          "no receiving ahead: io_uring_register_buf_ring", -r,
                          "IOCM_RECEIVE_AHEAD sockets receive one Recv at a time");
      return false;
    }
    rx_ring_ = static_cast<io_uring_buf_ring*>(ring);
    rx_memory_ = static_cast<std::byte*>(memory);
    io_uring_buf_ring_init(rx_ring_);
    for (unsigned id = 0; id < rx_buffer_count; ++id) give_back(id);
    rx_state_ = rx_pool_state::ready;
    return true;
  }

  void prepare_operation(op_state& op) noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room was checked
    ++inflight_;
    if (op.kind != op_kind::nop && op.kind != op_kind::connect)
      start_backend_fields<op_fields>(op).epoch =
          cancels_on(op.fd);  // what to_retry compares; never retried otherwise
    if (!host_.port_open(op.port_slot)) {
      // Its port is closing: complete it aborted, through the ring like any
      // other, so backpressure and ordering stay uniform.
      op.kind = op_kind::aborted;
      io_uring_prep_nop(sqe);
    } else {
      switch (op.kind) {
        case op_kind::read:
          io_uring_prep_read(sqe, op.fd, op.buffer, op.length, op.aux);
          break;
        case op_kind::write:
          if (op.aux == append_offset) {
            // At the end of the file, whatever the descriptor's position,
            // which stays where it was.
            io_uring_prep_write(sqe, op.fd, op.buffer, op.length, 0);
            sqe->rw_flags = RWF_APPEND;
          } else {
            io_uring_prep_write(sqe, op.fd, op.buffer, op.length, op.aux);
          }
          break;
        case op_kind::recv:
          io_uring_prep_recv(sqe, op.fd, op.buffer, op.length, 0);
          break;
        case op_kind::send:
          io_uring_prep_send(sqe, op.fd, op.buffer, op.length, MSG_NOSIGNAL);
          break;
        case op_kind::accept:
          io_uring_prep_accept(sqe, op.fd, nullptr, nullptr, SOCK_CLOEXEC);
          break;
        case op_kind::connect:
          io_uring_prep_connect(sqe, op.fd, static_cast<const sockaddr*>(op.buffer),
                                static_cast<socklen_t>(op.aux));
          break;
        default:
          io_uring_prep_nop(sqe);
          break;
      }
      // Every prep above put op.fd in sqe->fd: with the file registered,
      // that is its index in the table.
      if (op.kind != op_kind::nop && is_fixed(op.fd)) sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uint64_t>(overlapped_of(&op)));
  }

  /// Takes up to harvest_batch CQEs, whatever room the lane has: the
  /// operations' records go into the lane (the outbox keeps what has no
  /// room), requests get their answers. Returns how many CQEs. (One batch a
  /// pass: the loop comes back while anything moves, and submitting between
  /// batches keeps the kernel fed; measured, emptying the CQ in one pass was
  /// no faster.)
  unsigned harvest() noexcept {
    io_uring_cqe* cqes[harvest_batch];
    const unsigned n = sys_.uring_peek(&ring_, cqes, harvest_batch);
    if (n != 0) metrics_.harvested(n);
    for (unsigned i = 0; i < n; ++i) reap(cqes[i]->user_data, cqes[i]->res, cqes[i]->flags);
    io_uring_cq_advance(&ring_, n);
    inflight_ -= n;
    return n;
  }

  void reap(std::uint64_t user_data, std::int32_t res, std::uint32_t flags) noexcept {
    auto* r = reinterpret_cast<poller_request*>(user_data & ~tag_mask);
    switch (user_data & tag_mask) {
      case tag_wake:
        wake_armed_ = false;  // re-armed at the next pass
        return;
      case tag_cancel:
        return;
      case tag_answer_one:
        // 0: cancelled; -EALREADY: running, interrupted (it completes as
        // the kernel decides); -ENOENT: not in flight here.
        r->answer(res == 0 || res == -EALREADY ? 1 : 0);
        return;
      case tag_answer_all: {
        // The kernel counts the socket's own receive among what it cancelled.
        const std::uint32_t kernel = res > 0 ? static_cast<std::uint32_t>(res) : 0;
        r->answer(r->found + (kernel > r->own ? kernel - r->own : 0));
        return;
      }
      case tag_receive:
        received(static_cast<int>(user_data >> 3), res, flags);
        return;
      case tag_accept:
        accepted(static_cast<int>(user_data >> 3), res, flags);
        return;
      default:
        break;
    }
    auto* ov = reinterpret_cast<OVERLAPPED*>(user_data);
    op_state& op = *state_of(ov);
    if ((op.kind == op_kind::recv || op.kind == op_kind::accept) && (op.aux & recv_single) != 0) {
      single_done(op, res);
      return;
    }
    if (to_retry(op, res)) {
      waiting_.push(&op);
      return;
    }
    // Interrupted and not retried: a cancel interrupted it.
    if (res == -EINTR && op.kind != op_kind::nop) op.kind = op_kind::aborted;
    outbox_.add(op, finish(ov, res));
  }

  /// Creates the ring (probing setups) and the wake-up eventfd. A pumped
  /// engine's ring setup is already plain (uring_check_options): any thread may enter it.
  hosting::HRESULT set_up() noexcept override {
    if (const hosting::HRESULT hr =
            create_ring(sys_, ring_, ring_entries_, requested_setup_, setup_used_);
        FAILED(hr))
      return hr;
    ring_ready_ = true;
    if (fixed_wanted_) {
      // The kernel refuses a table larger than RLIMIT_NOFILE.
      rlimit files{};
      const rlim_t limit = ::getrlimit(RLIMIT_NOFILE, &files) == 0 ? files.rlim_cur : 1024;
      const unsigned size = static_cast<unsigned>(limit < fixed_most ? limit : fixed_most);
      if (const int r = io_uring_register_files_sparse(&ring_, size); r == 0) {
        fixed_ready_ = true;
        fixed_size_ = static_cast<int>(size);
      } else {
        metrics_.refused(IOCM_REFUSED_OTHER);
        report_refusal_once(fault_fixed_files, IOCM_LOG_INFO,
                            "no registered files: io_uring_register_files_sparse", -r,
                            "descriptors are used unregistered");
      }
    }
    // Blocking: io_uring answers a read on an O_NONBLOCK descriptor with
    // -EAGAIN instead of waiting for it.
    event_fd_ = sys_.eventfd(EFD_CLOEXEC);
    return event_fd_ >= 0 ? S_OK : E_OUTOFMEMORY;
  }

  const std::uint32_t ring_entries_;
  const std::uint32_t requested_setup_;
  const bool fixed_wanted_;
  // Registered files: whether the table exists (written by set_up, before
  // start returns; read-only after, also by registration on Bind's thread),
  // its size, and per descriptor whether it is in it (the poller's).
  bool fixed_ready_ = false;
  int fixed_size_ = 0;
  fd_table<bool> fixed_;
  completion_queue::producer_token completions_;
  const syscall_table& sys_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::uint32_t setup_used_ = 0;  // written before start() returns, read-only after
  int event_fd_ = -1;
  unsigned inflight_ = 0;  // SQEs handed to the kernel whose CQE is not reaped
  bool lane_full_ = false;
  bool wake_armed_ = false;
  std::uint64_t wake_buffer_ = 0;
  poller_request* acks_ = nullptr;  // Unbinds whose cancel is in the SQ, not yet submitted
  // Per descriptor, the cancels on it prepared so far (entries made at Bind,
  // touched by this poller only).
  fd_table<std::uint32_t> cancels_;
  // Operations to submit again (their CQE said -EINTR), in order, through
  // op_state::next.
  op_fifo waiting_;
  // Receiving ahead: each socket's state (entries made at Bind), the
  // sockets whose receive waits for SQ room to start again (fd + 1), and
  // the buffers, with each one's byte count and the next of its socket.
  fd_table<socket_rx> rx_;
  int rearm_head_ = 0, rearm_tail_ = 0;
  rx_pool_state rx_state_ = rx_pool_state::unmade;
  bool rx_works_ = false;  // a multishot receive has brought bytes here
  io_uring_buf_ring* rx_ring_ = nullptr;
  std::byte* rx_memory_ = nullptr;
  unsigned rx_in_kernel_ = 0;  // buffers the kernel may fill now
  std::uint32_t rx_bytes_[rx_buffer_count]{};
  std::uint16_t rx_next_[rx_buffer_count]{};
  // Accepting ahead: whether the kernel has multishot accept (unmade: not
  // known yet), and the connections kept (a free list through accepted_next_).
  rx_pool_state accept_state_ = rx_pool_state::unmade;
  int accepted_fd_[accepted_count]{};
  std::uint16_t accepted_next_[accepted_count]{};
  std::uint16_t accepted_free_ = 1;
  record_outbox outbox_;  // records not yet in the lane
};

}  // namespace

std::unique_ptr<poller> make_uring_poller(poller_setup setup) {
  return std::make_unique<uring_poller>(std::move(setup));
}

}  // namespace iocm::detail
