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
#include "handle_table.h"
#include "idle_notifiers.h"
#include "inbox.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "port_table.h"

namespace iocm::detail {

/// Says a line through the config's log callback, or on stderr.
struct log_sink {
  void (*callback)(void* context, std::uint32_t level, const char* message) = nullptr;
  void* context = nullptr;
  void say(std::uint32_t level, const char* text) const noexcept;
};

/// What a poller may ask of the engine: to publish the records it made,
/// whether a port still accepts operations, and to log. Thread-safe.
class poller_host {
 public:
  poller_host(completion_queue& queue, idle_notifiers& idle, const port_table& ports,
              log_sink log) noexcept
      : queue_(queue), idle_(idle), ports_(ports), log_(log) {}

  /// Publishes records through the poller's own lane, then wakes a
  /// notifier if one sleeps. Returns how many fit.
  std::size_t publish(completion_queue::producer_token& lane, const completion* records,
                      std::size_t n) noexcept {
    const std::size_t placed = queue_.try_enqueue_bulk(lane, records, n);
    if (placed != 0) idle_.wake_one(lane.shard());
    return placed;
  }
  /// False once the port is closing: its operations still in an inbox
  /// complete aborted.
  bool port_open(std::uint16_t slot) const noexcept { return ports_.is_open(slot); }
  /// For an answer of the kernel iocm does not expect; pollers say each
  /// kind once.
  void log(std::uint32_t level, const char* text) const noexcept { log_.say(level, text); }

 private:
  completion_queue& queue_;
  idle_notifiers& idle_;
  const port_table& ports_;
  const log_sink log_;
};

/// What a backend needs to build a poller.
struct poller_setup {
  poller_host* host = nullptr;
  unsigned index = 0;
  int cpu = -1;  // -1: do not pin
  std::uint32_t ring_entries = 256;
  std::uint32_t ring_setup = 0;  // iocm_ring_setup (io_uring)
  std::size_t inbox_capacity = 4096;
  std::pmr::memory_resource* inbox_memory = nullptr;  // the poller's node; null: default
  completion_queue::producer_token completions;       // own lane, own node's shard
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
  /// Unbind's part once fd's cancel is queued (bind lock held): stop
  /// watching fd (epoll: it leaves the epoll set).
  virtual void forget_handle(int fd, const binding& b) noexcept {
    (void)fd;
    (void)b;
  }
  /// The CPU the thread found itself pinned to once started, or -1.
  int pinned_cpu() const noexcept { return pinned_cpu_.load(std::memory_order_relaxed); }

  /// Queues a request from any thread; false if the inbox is full. Wakes the
  /// poller only if it is asleep. Thread-safe, lock-free.
  bool submit(inbox_item item) noexcept {
    return inbox_.push(item, [this] { wake(); });
  }

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

 private:
  std::atomic<int> pinned_cpu_{-1};  // read by describe() only
};

}  // namespace iocm::detail
