// The io_uring poller: one pinned thread that owns one ring. It moves
// submissions from its inbox into the SQ, harvests CQEs in batches into its
// own lane of the completion queue, and sleeps in io_uring_enter when idle
// (an eventfd read in the ring wakes it).
//
// Nothing is ever dropped: the poller never has more operations in flight
// than the CQ has entries, so the CQ cannot overflow; when its queue lane is
// full it stops harvesting and the kernel keeps the CQEs (backpressure).
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
int try_setup(io_uring& ring, std::uint32_t entries, std::uint32_t level) {
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
  const int r = io_uring_queue_init_params(entries, &ring, &p);
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
        completions_(std::move(setup.completions)) {}

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
    // A failed write means the counter is about to overflow: a wake-up is
    // already pending, which is all we need.
    [[maybe_unused]] const ssize_t n = ::write(event_fd_, &one, sizeof one);
  }

 private:
  bool defer_taskrun() const noexcept { return setup_used_ == IOCM_RING_DEFER_TASKRUN; }

  void loop() override {
    backoff full_wait;
    for (;;) {
      if (!wake_armed_ && !stopping() && inflight_ < inflight_limit_ &&
          io_uring_sq_space_left(&ring_) != 0)
        arm_wake_read();
      bool progress = take_inbox() != 0;
      const unsigned harvested = harvest();
      progress = progress || harvested != 0;
      if (stopping() && inflight_ == (wake_armed_ ? 1u : 0u) && inbox_.empty_approx()) break;
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
      io_uring_submit_and_wait(&ring_, 1);
    }
  }

  /// Enters the kernel only if it has something for us: SQEs to submit, or
  /// operations (besides the wake-up read) whose completions may be waiting
  /// there. With DEFER_TASKRUN every entry is a syscall, even an empty one.
  void flush() {
    if (io_uring_sq_ready(&ring_) != 0 || inflight_ > (wake_armed_ ? 1u : 0u)) enter_kernel(false);
  }

  /// Submits what is in the SQ; with wait, sleeps until a CQE arrives.
  void enter_kernel(bool wait) {
    int r;
    do {
      if (wait)
        r = io_uring_submit_and_wait(&ring_, 1);
      else if (defer_taskrun())
        r = io_uring_submit_and_get_events(&ring_);  // runs deferred completions
      else
        r = io_uring_submit(&ring_);
    } while (r == -EINTR);
    // -EBUSY / -EAGAIN: the kernel wants CQEs reaped first; the loop
    // harvests and comes back. Anything else would be a bug in iocm.
  }

  void arm_wake_read() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_read(sqe, event_fd_, &wake_buffer_, sizeof wake_buffer_, 0);
    sqe->user_data = tag_wake;
    ++inflight_;
    wake_armed_ = true;
  }

  /// Moves up to submit_batch requests from the inbox into the SQ.
  unsigned take_inbox() {
    const unsigned sq_room = io_uring_sq_space_left(&ring_);
    const unsigned cq_room = inflight_limit_ - inflight_;
    unsigned room = sq_room < cq_room ? sq_room : cq_room;
    if (room > submit_batch) room = submit_batch;
    if (room == 0) return 0;
    inbox_item items[submit_batch];
    const std::size_t n = inbox_.try_dequeue_bulk(items, room);
    for (std::size_t i = 0; i < n; ++i) prepare(items[i]);
    inflight_ += static_cast<unsigned>(n);
    return static_cast<unsigned>(n);
  }

  void prepare(inbox_item item) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // room was checked
    switch (item & inbox_tag_mask) {
      case inbox_cancel_one:
        io_uring_prep_cancel64(sqe, item & ~inbox_tag_mask, 0);
        sqe->user_data = tag_cancel;
        return;
      case inbox_cancel_fd:
        io_uring_prep_cancel_fd(sqe, static_cast<int>(item >> 3), IORING_ASYNC_CANCEL_ALL);
        sqe->user_data = tag_cancel;
        return;
      default:
        break;
    }
    auto* ov = reinterpret_cast<OVERLAPPED*>(item);
    op_state& op = *state_of(ov);
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
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, harvest_batch);
    if (n == 0) {
      lane_full_ = false;
      return 0;
    }
    completion records[harvest_batch];
    unsigned cqe_of[harvest_batch];
    unsigned m = 0;
    for (unsigned i = 0; i < n; ++i) {
      const std::uint64_t ud = cqes[i]->user_data;
      if ((ud & tag_mask) != 0) continue;  // ours, not an operation
      records[m] = finish(reinterpret_cast<OVERLAPPED*>(ud), cqes[i]->res);
      cqe_of[m++] = i;
    }
    const std::size_t placed = m == 0 ? 0 : core_.queue_publish(completions_, records, m);
    const unsigned consumed = placed == m ? n : cqe_of[placed];
    for (unsigned i = 0; i < consumed; ++i)
      if (cqes[i]->user_data == tag_wake) wake_armed_ = false;  // re-armed at the loop's top
    io_uring_cq_advance(&ring_, consumed);
    inflight_ -= consumed;
    lane_full_ = placed < m;
    return consumed;
  }

  /// Creates the ring (probing setups) and the wake-up eventfd.
  hosting::HRESULT set_up() noexcept override {
    int r = -EINVAL;
    if (requested_setup_ == IOCM_RING_PROBE) {
      for (std::uint32_t level :
           {IOCM_RING_DEFER_TASKRUN, IOCM_RING_COOP_TASKRUN, IOCM_RING_PLAIN}) {
        r = try_setup(ring_, ring_entries_, level);
        if (r == 0) {
          setup_used_ = level;
          break;
        }
        if (r == -ENOMEM) break;
      }
    } else {
      r = try_setup(ring_, ring_entries_, requested_setup_);
      setup_used_ = requested_setup_;
    }
    if (r != 0) return r == -ENOMEM ? E_OUTOFMEMORY : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    ring_ready_ = true;
    inflight_limit_ = ring_.cq.ring_entries;
    // Blocking: io_uring answers a read on an O_NONBLOCK descriptor with
    // -EAGAIN instead of waiting for it.
    event_fd_ = ::eventfd(0, EFD_CLOEXEC);
    return event_fd_ >= 0 ? S_OK : E_OUTOFMEMORY;
  }

  engine_core& core_;
  const std::uint32_t ring_entries_;
  const std::uint32_t requested_setup_;
  completion_queue::producer_token completions_;
  io_uring ring_{};
  bool ring_ready_ = false;
  std::uint32_t setup_used_ = 0;  // written before start() returns, read-only after
  int event_fd_ = -1;
  unsigned inflight_limit_ = 0;  // CQ entries: more in flight could overflow the CQ
  unsigned inflight_ = 0;        // SQEs handed to the kernel whose CQE is not reaped
  bool lane_full_ = false;
  bool wake_armed_ = false;
  std::uint64_t wake_buffer_ = 0;
};

}  // namespace

std::unique_ptr<poller> make_uring_poller(poller_setup setup) {
  return std::make_unique<uring_poller>(std::move(setup));
}

int probe_uring() noexcept {
  io_uring ring{};
  const int r = try_setup(ring, 2, IOCM_RING_PLAIN);
  if (r == 0) io_uring_queue_exit(&ring);
  return r;
}

}  // namespace iocm::detail
