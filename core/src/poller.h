// The poller interface the engine core declares and platform/ implements
// (one poller per placed CPU: a pinned thread that takes requests from its
// inbox to the kernel and harvests the kernel's completions into its lane
// of the completion queue), and the little of the engine a poller may see
// (poller_host). The backends themselves, and which to use, are platform/'s
// (backend.h).
//
// What may block: nothing the engine calls on a poller waits for the
// kernel, except stop_and_join (until the kernel has given back every
// operation) and a pumped engine's pump_wait (its sleep). Requests are
// queued, never run on the caller's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <memory_resource>

#include "completion_queue.h"
#include "delivery.h"
#include "handle_table.h"
#include "idle_notifiers.h"
#include "inbox.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "metrics.h"
#include "port_table.h"

namespace iocm::detail {

/// Says a line through the config's log callback, or on stderr.
struct log_sink {
  void (*callback)(void* context, std::uint32_t level, const char* message) = nullptr;
  void* context = nullptr;
  void say(std::uint32_t level, const char* text) const noexcept;
};

/// What a poller may ask of the engine: to publish the records it made,
/// whether a port still accepts operations, to deliver a record on its own
/// thread (inline delivery), and to log. Thread-safe.
class poller_host {
 public:
  /// `notifiers`: whether the engine has notifiers to wake (a pumped
  /// engine has none: its pump takes what is published).
  poller_host(completion_queue& queue, idle_notifiers& idle, bool notifiers,
              const port_table& ports, delivery& deliver, log_sink log) noexcept
      : queue_(queue),
        idle_(idle),
        notifiers_(notifiers),
        ports_(ports),
        delivery_(deliver),
        log_(log) {}

  /// Publishes records through the poller's own lane, then wakes a
  /// notifier if one sleeps. Returns how many fit.
  /// Without `wake`, no notifier is woken: a poller that delivers inline
  /// takes the records back itself after its OnComplete, unless a spinning
  /// notifier (or the ring monitor's wake_notifiers) comes first.
  /// A pumped engine wakes nobody: its pump takes the records.
  /// Counts in `m` a wake-up that was not needed (no notifier slept), and
  /// on every 16th of those how deep the lane is then: a deep lane with
  /// no notifier asleep is the one whose notifiers do not keep up.
  std::size_t publish(completion_queue::producer_token& lane, const completion* records,
                      std::size_t n, poller_metrics& m, bool wake = true) noexcept {
    const std::size_t placed = queue_.try_enqueue_bulk(lane, records, n);
    if (placed == 0) return 0;
    if (wake && notifiers_ && !idle_.wake_one(lane.shard()) && m.wake_avoided())
      m.queue_high_water.raise_to(lane.lane_size_approx());
    return placed;
  }
  /// True when some notifier sleeps: handing a record over would cost a
  /// wake-up. (When none sleeps, they are all delivering or spinning, and
  /// one takes a record at once.)
  bool a_notifier_sleeps() const noexcept { return idle_.parked() != 0; }
  /// Wakes a notifier of `shard` if records wait there and one sleeps.
  void wake_notifiers(std::size_t shard) noexcept {
    if (!queue_.empty_approx()) idle_.wake_one(shard);
  }
  /// False once the port is closing: its operations still in an inbox
  /// complete aborted.
  bool port_open(std::uint16_t slot) const noexcept { return ports_.is_open(slot); }
  /// For an answer of the kernel iocm does not expect; pollers say each
  /// kind once.
  void log(std::uint32_t level, const char* text) const noexcept { log_.say(level, text); }

  // --- Inline delivery: a poller's own thread delivers (docs/ENGINE.md,
  // --- "Delivery where the completion lands").
  /// The calling thread (a poller's) delivers this engine's records from now
  /// on, counting them in `row`; returns whom it delivered for before.
  delivery::outer_thread enter_thread(port_table::delivered_row& row) noexcept {
    return delivery_.enter_thread(row);
  }
  /// OnComplete for `record` on the calling thread.
  void deliver(const completion& record) noexcept { delivery_.deliver(record); }
  /// Takes one queued record for the calling poller to deliver; false when
  /// none waits.
  bool take_queued(completion_queue::consumer_token& token, completion& record) noexcept {
    return queue_.try_dequeue(token, record);
  }

 private:
  completion_queue& queue_;
  idle_notifiers& idle_;
  const bool notifiers_;
  const port_table& ports_;
  delivery& delivery_;
  const log_sink log_;
};

/// What a backend needs to build a poller.
struct poller_setup {
  poller_host* host = nullptr;
  unsigned index = 0;
  int cpu = -1;  // -1: do not pin
  std::uint32_t ring_entries = 256;
  std::uint32_t ring_setup = 0;  // iocm_ring_setup (io_uring)
  bool fixed_files = false;      // IOCM_FIXED_FILES (io_uring)
  std::size_t inbox_capacity = 4096;
  std::pmr::memory_resource* inbox_memory = nullptr;  // the poller's node; null: default
  completion_queue::producer_token completions;       // own lane, own node's shard
  /// Inline delivery (a threaded engine without IOCM_HANDOFF): the row the
  /// poller's own thread counts its deliveries in, and the token with which
  /// it takes queued records while it waits inside OnComplete. Null: the
  /// poller never delivers.
  port_table::delivered_row* delivered = nullptr;
  completion_queue::consumer_token helper;
  bool inline_all = false;  // IOCM_INLINE_ALL: every harvest delivered here
};

class poller {
 public:
  explicit poller(std::size_t inbox_capacity, std::pmr::memory_resource* memory = nullptr)
      : inbox_(inbox_capacity, memory) {}
  virtual ~poller() = default;
  poller(const poller&) = delete;
  poller& operator=(const poller&) = delete;

  /// Starts the thread and waits until it has set up its kernel side;
  /// returns S_OK or why it could not. Called once.
  virtual hosting::HRESULT start() = 0;
  /// Asks the thread to finish (after the inbox is drained and nothing is
  /// in flight) and joins it. Called once, after every port is closed. A
  /// poller started inline finishes on the calling thread.
  virtual void stop_and_join() noexcept = 0;

  // --- A pumped engine's poller (IOCM_PUMPED): no thread of its own; the
  // --- engine calls these on the thread that owns its pump, one at a time.
  /// Instead of start(): sets up the kernel side on the calling thread.
  virtual hosting::HRESULT start_inline() noexcept = 0;
  /// One pass that never sleeps: the inbox to the kernel, the kernel's
  /// completions into the queue. True when anything moved (or records
  /// wait for room in the queue).
  virtual bool pump_pass() noexcept = 0;
  /// Sleeps in the kernel for up to timeout_ms (IOCM_INFINITE: no limit)
  /// until a completion comes or a submitter or poster wakes it; returns at
  /// once when the inbox or `records` already holds something.
  void pump_wait(std::uint32_t timeout_ms, const completion_queue& records) noexcept {
    // The same handshake as the poller thread's sleep: a submitter (or a
    // poster, nudge) either sees the flag and wakes us, or we see its work.
    if (!inbox_.prepare_to_sleep()) return;
    if (records.empty_approx()) pump_sleep(timeout_ms);
    inbox_.awake();
  }
  /// A Post put a record into the queue: wakes a pump_wait that sleeps.
  void nudge() noexcept {
    inbox_.nudge([this] { wake(); });
  }
  /// The io_uring setup the probe settled on (an iocm_ring_setup value; 0
  /// for epoll).
  virtual std::uint32_t ring_setup() const noexcept = 0;
  /// IOCM_BACKEND_URING or IOCM_BACKEND_EPOLL.
  virtual std::uint32_t backend() const noexcept = 0;
  /// Bind's part in the poller, on the binding thread (under the engine's
  /// bind lock), before any operation on fd can be submitted. May change
  /// b.kind (epoll: a descriptor epoll refuses runs like a file) and
  /// b.made_nonblocking.
  virtual hosting::HRESULT prepare_handle(int fd, binding& b) noexcept {
    (void)fd;
    (void)b;
    return hosting::S_OK;
  }
  /// Bind's last part (bind lock held): the request that registers fd in
  /// the poller's file table, to queue before the binding is published;
  /// 0 when the poller registers nothing.
  virtual inbox_item registration(int fd) const noexcept {
    (void)fd;
    return 0;
  }
  /// Unbind's part once fd's cancel is queued (bind lock held): stop
  /// watching fd (epoll: it leaves the epoll set).
  virtual void forget_handle(int fd, const binding& b) noexcept {
    (void)fd;
    (void)b;
  }
  /// The CPU the thread found itself pinned to once started, or -1.
  int pinned_cpu() const noexcept { return pinned_cpu_.load(std::memory_order_relaxed); }
  /// What it counted (iocm_metrics). Any thread; a snapshot.
  const poller_metrics& metrics() const noexcept { return metrics_; }

  /// Queues a request from any thread; false if the inbox is full. Wakes the
  /// poller only if it is asleep. Thread-safe, lock-free.
  bool submit(inbox_item item) noexcept {
    return inbox_.push(item, [this] { wake(); });
  }

  // --- Inline delivery (docs/ENGINE.md, "Delivery where the completion
  // --- lands"). The poller's own thread delivers the first record of each
  // --- harvest itself; while it is inside OnComplete its ring (or epoll
  // --- set) is free for any engine thread to drive.
  /// True when this poller's thread delivers records itself.
  virtual bool delivers_inline() const noexcept { return false; }
  /// True while the poller's thread is inside OnComplete (it counts as a
  /// busy thread for GetAvailableThreads). Any thread; a snapshot.
  virtual bool in_callback() const noexcept { return false; }
  /// The poller whose thread the caller is, while that thread is inside an
  /// OnComplete it delivers inline; null elsewhere.
  static poller* home_in_callback() noexcept { return tl_home_in_callback_; }
  /// From inside the poller's own inline OnComplete (home_in_callback() ==
  /// this): puts an operation straight into the ring, no inbox, no wake-up;
  /// false when that cannot be done now (the inbox takes it instead).
  virtual bool submit_direct(inbox_item item) noexcept {
    (void)item;
    return false;
  }
  /// From inside the poller's own inline OnComplete, waiting (Close, Unbind,
  /// Cancel): moves the inbox and the kernel's completions on, and delivers
  /// one queued record, nested; false when nothing moved.
  virtual bool help_from_callback() noexcept { return false; }

  /// What the ring monitor (ring_monitor.h) sees of a poller.
  enum class watch_state { quiet, in_callback, stuck };
  /// On the monitor's thread only: quiet; in a callback that began since
  /// the last look; or in the same callback as at the last look (stuck).
  virtual watch_state watch() noexcept { return watch_state::quiet; }
  /// On the monitor's thread, for a stuck poller: drives its ring (the
  /// inbox into the kernel, completions into the queue for the notifiers)
  /// until its thread comes back from OnComplete, for at most `most_ms`.
  virtual void serve_while_stuck(std::uint32_t most_ms) noexcept { (void)most_ms; }

 protected:
  /// Makes the thread return from its kernel wait (an eventfd write).
  virtual void wake() noexcept = 0;
  /// pump_wait's sleep in the kernel, which wake() ends.
  virtual void pump_sleep(std::uint32_t timeout_ms) noexcept = 0;

  /// The thread calls this after pinning itself (or not).
  void record_pinning() noexcept {
    pinned_cpu_.store(os::pinned_cpu_of_current_thread(), std::memory_order_relaxed);
  }

  poller_inbox inbox_;
  poller_metrics metrics_;  // written by whichever thread drives the poller now
  static inline thread_local poller* tl_home_in_callback_ = nullptr;

 private:
  std::atomic<int> pinned_cpu_{-1};  // read by describe() only
};

}  // namespace iocm::detail
