// The io_uring poller: one pinned thread that owns one ring. It moves
// submissions from its inbox into the SQ, harvests CQEs in batches into its
// own lane of the completion queue, and sleeps in io_uring_enter when idle
// (an eventfd read in the ring wakes it).
//
// Nothing is ever dropped: the poller never has more operations in flight
// than the CQ has entries, so the CQ cannot overflow; when its queue lane is
// full it stops harvesting and the kernel keeps the CQEs (backpressure).
//
// Every call into the kernel goes through the syscall table (syscalls.h).
// What the kernel may answer, and what the poller does (docs/ENGINE.md,
// "When the kernel says no"):
// - io_uring_enter: EINTR, retried at once; EAGAIN, EBUSY and ENOMEM, tried
//   again after the CQ is harvested and a pause (the SQ keeps what was not
//   submitted); EBADR and anything else, said once through the engine's
//   log, then handled like EAGAIN.
// - a CQE of -EINTR (an interrupted kernel worker): the operation is
//   submitted again, unless a cancel of its whole descriptor came since
//   (then it completes aborted) or it is a connect.
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "engine_core.h"
#include "iocm/detail/backoff.h"
#include "op_state.h"
#include "os.h"
#include "poller.h"
#include "pollers.h"
#include "syscalls.h"
#include "threaded_poller.h"

namespace iocm::detail {

using namespace hosting;

namespace {

// CQE user_data: an OVERLAPPED* (8-aligned), or one of these tags.
constexpr std::uint64_t tag_mask = 7;
constexpr std::uint64_t tag_wake = 1;    // the eventfd read
constexpr std::uint64_t tag_cancel = 2;  // an async cancel's own CQE
constexpr unsigned harvest_batch = 64;
constexpr unsigned submit_batch = 64;

/// Tries one ring setup; 0 or -errno.
int try_setup(const syscall_table& sys, io_uring& ring, std::uint32_t entries,
              std::uint32_t level) {
  io_uring_params p{};
  switch (level) {
    case IOCM_RING_DEFER_TASKRUN:
      p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
      break;
    case IOCM_RING_COOP_TASKRUN:
      p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
      break;
    default:
      break;
  }
  p.flags |= IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 2;
  const int r = sys.uring_setup(entries, &ring, &p);
  if (r == 0 && (p.features & IORING_FEAT_NODROP) == 0) {
    // Without NODROP an overflowing CQ loses completions; iocm also never
    // lets it overflow, but refuses to run on a kernel that old (< 5.5).
    io_uring_queue_exit(&ring);
    return -ENOSYS;
  }
  return r;
}

class uring_poller final : public threaded_poller {
 public:
  explicit uring_poller(poller_setup setup)
      : threaded_poller(setup, "iocm-poll"),
        core_(*setup.core),
        ring_entries_(setup.ring_entries),
        requested_setup_(setup.ring_setup),
        completions_(std::move(setup.completions)),
        sys_(syscalls_in_use()) {}

  ~uring_poller() override {
    stop_if_running();
    if (ring_ready_) io_uring_queue_exit(&ring_);
    if (event_fd_ >= 0) ::close(event_fd_);
  }

  std::uint32_t ring_setup() const noexcept override { return setup_used_; }
  std::uint32_t backend() const noexcept override { return IOCM_BACKEND_URING; }

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
  bool pass() {
    // Armed even when the CQ is at its limit (one CQE over it is kept,
    // NODROP): a sleeping poller must still see cancels and Unbinds.
    if (!wake_armed_ && !stopping() && io_uring_sq_space_left(&ring_) != 0) arm_wake_read();
    bool progress = take_inbox() != 0;
    progress = harvest() != 0 || progress;
    if (!aborted_.empty()) {
      if (publish_aborted())
        progress = true;
      else
        lane_full_ = true;  // as for CQEs: wait for the notifiers, awake
    }
    return progress;
  }

  bool pump_pass() noexcept override {
    bool progress = pass();
    flush();                                // what the pass prepared goes to the kernel now
    progress = harvest() != 0 || progress;  // and what finished inline comes back
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

  void loop() override {
    backoff full_wait;
    for (;;) {
      const bool progress = pass();
      if (stopping() && inflight_ == (wake_armed_ ? 1u : 0u) && waiting_.empty() &&
          aborted_.empty() && inbox_.empty_approx())
        break;
      if (lane_full_) {
        // Backpressure: notifiers must drain our lane first. Keep the kernel
        // fed, give the core away.
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
        // still owed, e.g. of the cancels Close sent. (Or the CQ is at its
        // limit: a CQE frees room.)
        if (inflight_ != 0) enter_kernel(true);
        continue;
      }
      if (keep_polling()) continue;
      if (!prepare_to_sleep()) continue;
      enter_kernel(true);  // an eventfd write (submit, stop) ends it
      awake();
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
    if (io_uring_sq_ready(&ring_) != 0 || inflight_ > (wake_armed_ ? 1u : 0u)) enter_kernel(false);
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
    switch (r) {
      case -EAGAIN:  // short of resources for now
      case -EBUSY:   // completions must be reaped first
        break;
      case -ENOMEM:
        report_once(fault_enter_nomem, IOCM_LOG_WARNING,
                    "io_uring_enter ran out of memory (ENOMEM); retrying until it succeeds");
        break;
      case -EBADR:
        // The kernel lost a CQE it could not store: the CQ was full and no
        // memory was left for its overflow list. Operations stay within
        // the CQ; only the few cancels and Unbinds that go past it can
        // make it overflow, in which case any CQE posted then may be the
        // lost one. Nothing can tell which: say so, go on harvesting.
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
    while (unbind_ack* ack = acks_) {
      acks_ = ack->next;
      ack->give();  // the last touch: the ack lives on Unbind's stack
    }
  }

  /// Moves requests into the SQ; returns how many it handled. Operations go
  /// in order, first those that wait (retried, or taken when the CQ had no
  /// room), each when the CQ has room for its completion. Cancels and
  /// Unbinds go at once, whatever the room: they are few, Unbind waits for
  /// them, and NODROP keeps the CQEs of a CQ a few entries over its limit.
  unsigned take_inbox() {
    unsigned sqes = io_uring_sq_space_left(&ring_);
    // Room for operations: an SQE each, and a CQE within the limit.
    unsigned room = inflight_ < inflight_limit_ ? inflight_limit_ - inflight_ : 0;
    if (room > sqes) room = sqes;
    unsigned handled = 0;
    auto take = [&](inbox_item item) {
      prepare(item);
      ++inflight_;
      --sqes;
      if (room != 0) --room;
    };
    while (!waiting_.empty() && room != 0) {
      take(reinterpret_cast<inbox_item>(overlapped_of(waiting_.pop())));
      ++handled;
    }
    inbox_item items[submit_batch];
    const std::size_t n = inbox_.try_dequeue_bulk(items, sqes < submit_batch ? sqes : submit_batch);
    for (std::size_t i = 0; i < n; ++i) {
      if ((items[i] & inbox_tag_mask) == 0 && (!waiting_.empty() || room == 0))
        waiting_.push(state_of(reinterpret_cast<OVERLAPPED*>(items[i])));
      else
        take(items[i]);  // an SQE each: n <= sqes
    }
    return handled + static_cast<unsigned>(n);
  }

  /// A cancel of all on fd goes to the kernel ahead of the operations on fd
  /// still waiting here for room: they complete aborted, without the
  /// kernel (publish_aborted).
  void abort_waiting_on(int fd) noexcept {
    waiting_.remove_if([fd](const op_state& op) { return op.fd == fd; },
                       [this](op_state* op) {
                         op->kind = op_kind::aborted;
                         aborted_.push(op);
                       });
  }

  /// Publishes the operations abort_waiting_on took; false while the lane
  /// has no room.
  bool publish_aborted() {
    while (!aborted_.empty()) {
      const completion record = finish(overlapped_of(aborted_.head), 0);
      if (core_.queue_publish(completions_, &record, 1) == 0) return false;
      aborted_.pop();
    }
    return true;
  }

  /// A CQE the kernel's worker could not finish because it was interrupted:
  /// the operation goes to the kernel again, unless a cancel of all on a
  /// descriptor (Unbind, Cancel of a handle, Close) came since it was
  /// submitted: the interruption may be that cancel, and a retry would
  /// outlive it. A connect is not retried either: a second connect on a
  /// socket already connecting fails.
  bool to_retry(const io_uring_cqe& cqe) const noexcept {
    if (cqe.res != -EINTR) return false;
    const op_state& op = *state_of(reinterpret_cast<OVERLAPPED*>(cqe.user_data));
    return op.kind != op_kind::nop && op.kind != op_kind::aborted && op.kind != op_kind::connect &&
           op.epoch == fd_cancels_;
  }

  /// Cancel, Close and Unbind's cancel of everything on fd: in the kernel,
  /// and for the operations still waiting here for room.
  void cancel_all_on(io_uring_sqe* sqe, int fd) noexcept {
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    sqe->user_data = tag_cancel;
    ++fd_cancels_;  // an -EINTR CQE after this is not retried (to_retry)
    abort_waiting_on(fd);
  }

  void prepare(inbox_item item) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room was checked
    switch (item & inbox_tag_mask) {
      case inbox_cancel_one:
        io_uring_prep_cancel64(sqe, item & ~inbox_tag_mask, 0);
        sqe->user_data = tag_cancel;
        return;
      case inbox_cancel_fd:
        cancel_all_on(sqe, static_cast<int>(item >> 3));
        return;
      case inbox_unbind: {
        // The kernel looks fd up when it gets the SQE: Unbind waits until
        // then (acks are given once the SQ is submitted).
        auto* ack = reinterpret_cast<unbind_ack*>(item & ~inbox_tag_mask);
        cancel_all_on(sqe, ack->fd);
        ack->next = acks_;
        acks_ = ack;
        return;
      }
      default:
        break;
    }
    auto* ov = reinterpret_cast<OVERLAPPED*>(item);
    op_state& op = *state_of(ov);
    op.epoch = fd_cancels_;
    // Acquire pairs with Cancel's release store.
    if (op.cancel_requested.load(std::memory_order_acquire) != 0 ||
        !core_.port_open(op.port_slot)) {
      // Cancelled or its port is closing: complete it aborted, through the
      // ring like any other, so backpressure and ordering stay uniform.
      op.kind = op_kind::aborted;
      io_uring_prep_nop(sqe);
    } else {
      switch (op.kind) {
        case op_kind::read:
          io_uring_prep_read(sqe, op.fd, op.buffer, op.length, op.aux);
          break;
        case op_kind::write:
          io_uring_prep_write(sqe, op.fd, op.buffer, op.length, op.aux);
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
    }
    io_uring_sqe_set_data64(sqe, reinterpret_cast<std::uint64_t>(ov));
  }

  /// Harvests up to harvest_batch CQEs into the queue; returns how many CQEs
  /// were consumed. Stops at the first record the lane has no room for.
  unsigned harvest() {
    io_uring_cqe* cqes[harvest_batch];
    const unsigned n = sys_.uring_peek(&ring_, cqes, harvest_batch);
    if (n == 0) {
      lane_full_ = false;
      return 0;
    }
    completion records[harvest_batch];
    unsigned cqe_of[harvest_batch];
    unsigned m = 0;
    for (unsigned i = 0; i < n; ++i) {
      const std::uint64_t ud = cqes[i]->user_data;
      if ((ud & tag_mask) != 0 || to_retry(*cqes[i])) continue;  // no record
      auto* ov = reinterpret_cast<OVERLAPPED*>(ud);
      // Interrupted and not retried: a cancel interrupted it.
      if (cqes[i]->res == -EINTR && state_of(ov)->kind != op_kind::nop)
        state_of(ov)->kind = op_kind::aborted;
      records[m] = finish(ov, cqes[i]->res);
      cqe_of[m++] = i;
    }
    const std::size_t placed = m == 0 ? 0 : core_.queue_publish(completions_, records, m);
    const unsigned consumed = placed == m ? n : cqe_of[placed];
    for (unsigned i = 0; i < consumed; ++i) {
      const std::uint64_t ud = cqes[i]->user_data;
      if (ud == tag_wake)
        wake_armed_ = false;  // re-armed at the loop's top

      else if ((ud & tag_mask) == 0 && to_retry(*cqes[i]))
        waiting_.push(state_of(reinterpret_cast<OVERLAPPED*>(ud)));  // only once consumed
    }
    io_uring_cq_advance(&ring_, consumed);
    inflight_ -= consumed;
    lane_full_ = placed < m;
    return consumed;
  }

  /// Creates the ring (probing setups) and the wake-up eventfd. A pumped
  /// engine's prepare() has already settled on a setup any thread may enter.
  hosting::HRESULT set_up() noexcept override {
    int r = -EINVAL;
    if (requested_setup_ == IOCM_RING_PROBE) {
      for (std::uint32_t level :
           {IOCM_RING_DEFER_TASKRUN, IOCM_RING_COOP_TASKRUN, IOCM_RING_PLAIN}) {
        r = try_setup(sys_, ring_, ring_entries_, level);
        if (r == 0) {
          setup_used_ = level;
          break;
        }
        if (r == -ENOMEM) break;
      }
    } else {
      r = try_setup(sys_, ring_, ring_entries_, requested_setup_);
      setup_used_ = requested_setup_;
    }
    if (r != 0) return r == -ENOMEM ? E_OUTOFMEMORY : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    ring_ready_ = true;
    inflight_limit_ = ring_.cq.ring_entries;
    // Blocking: io_uring answers a read on an O_NONBLOCK descriptor with
    // -EAGAIN instead of waiting for it.
    event_fd_ = sys_.eventfd(EFD_CLOEXEC);
    return event_fd_ >= 0 ? S_OK : E_OUTOFMEMORY;
  }

  engine_core& core_;
  const std::uint32_t ring_entries_;
  const std::uint32_t requested_setup_;
  completion_queue::producer_token completions_;
  const syscall_table& sys_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::uint32_t setup_used_ = 0;  // written before start() returns, read-only after
  int event_fd_ = -1;
  unsigned inflight_limit_ = 0;  // CQ entries: more in flight could overflow the CQ
  unsigned inflight_ = 0;        // SQEs handed to the kernel whose CQE is not reaped
  bool lane_full_ = false;
  bool wake_armed_ = false;
  std::uint64_t wake_buffer_ = 0;
  unbind_ack* acks_ = nullptr;    // Unbinds whose cancel is in the SQ, not yet submitted
  std::uint32_t fd_cancels_ = 0;  // cancels of all on a descriptor prepared so far
  // Operations to submit once the CQ has room (taken from the inbox when it
  // had none, or whose CQE said -EINTR), in order, through op_state::next.
  op_fifo aborted_;  // taken from waiting_ by a cancel, to publish
  op_fifo waiting_;
};

}  // namespace

std::unique_ptr<poller> make_uring_poller(poller_setup setup) {
  return std::make_unique<uring_poller>(std::move(setup));
}

int probe_uring() noexcept {
  io_uring ring{};
  const int r = try_setup(syscalls_in_use(), ring, 2, IOCM_RING_PLAIN);
  if (r == 0) io_uring_queue_exit(&ring);
  return r;
}

}  // namespace iocm::detail
