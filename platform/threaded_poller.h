// What both backends' pollers share: a thread that names and pins itself,
// blocks SIGPIPE, sets up its kernel side, reports that to start(), then
// runs the backend's loop until stop_and_join(). A pumped engine's poller
// has no thread: start_inline() sets it up on the caller's thread, the
// engine's pump runs it pass by pass, and stop_and_join() runs the loop's
// last part (until nothing is in flight) on the caller's thread.
//
// Inline delivery (docs/ENGINE.md, "Delivery where the completion lands"):
// the poller's thread delivers the first record of a harvest itself. Its
// ring (or epoll set) and everything the poller keeps are guarded by one
// token, which the thread holds except while it is inside OnComplete. Then
// the thread's own callback may put its next operation straight into the
// ring (submit_direct), a wait inside it drives the ring itself
// (help_from_callback), and, when the callback stays too long, the ring
// monitor drives the ring instead (serve_while_stuck) until the thread
// comes back and takes the token again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "iocm/detail/backoff.h"
#include "os.h"
#include "poller.h"
#include "record_outbox.h"

namespace iocm::detail {

class threaded_poller : public poller {
 public:
  threaded_poller(poller_setup& setup, const char* name_prefix)
      : poller(setup.inbox_capacity, setup.inbox_memory),
        host_(*setup.host),
        index_(setup.index),
        cpu_(setup.cpu),
        prefix_(name_prefix),
        delivered_(setup.delivered),
        inline_most_(setup.inline_all ? ~std::size_t{0} : 3),
        inline_always_(setup.inline_all),
        helper_(std::move(setup.helper)),
        shard_(setup.completions.shard()) {}

  /// Starts the thread; returns what its set_up() answered.
  hosting::HRESULT start() final {
    thread_ = std::thread([this] { thread_main(); });
    std::unique_lock lock(start_mutex_);
    start_cv_.wait(lock, [&] { return start_result_.has_value(); });
    const hosting::HRESULT hr = *start_result_;
    lock.unlock();
    if (hosting::FAILED(hr)) thread_.join();
    return hr;
  }

  void stop_and_join() noexcept final {
    stop_.store(true, std::memory_order_release);
    if (inline_ready_) {
      inline_ready_ = false;
      loop();  // with stopping() set: returns once nothing is in flight
      return;
    }
    wake();
    if (thread_.joinable()) thread_.join();
  }

  hosting::HRESULT start_inline() noexcept final {
    delivered_ = nullptr;  // the pump delivers
    const hosting::HRESULT hr = set_up();
    inline_ready_ = hosting::SUCCEEDED(hr);
    return hr;
  }

  // --- Inline delivery (poller.h).
  bool delivers_inline() const noexcept final { return delivered_ != nullptr; }
  bool in_callback() const noexcept final {
    return (callbacks_.load(std::memory_order_relaxed) & 1) != 0;
  }
  bool submit_direct(inbox_item item) noexcept final {
    if (!try_own()) return false;  // the monitor drives the ring now
    const bool taken = take_direct(item);
    disown();
    return taken;
  }
  bool help_from_callback() noexcept final {
    bool moved = false;
    if (try_own()) {
      moved = pump_pass();
      disown();
    }
    completion queued;  // nested, as a notifier's wait delivers
    if (!host_.take_queued(helper_, queued)) return moved;
    host_.deliver(queued);
    return true;
  }
  watch_state watch() noexcept final {
    const std::uint64_t seq = callbacks_.load(std::memory_order_acquire);
    if ((seq & 1) == 0) {
      seen_ = seq;
      return watch_state::quiet;
    }
    if (seq != seen_) {
      seen_ = seq;
      return watch_state::in_callback;
    }
    return watch_state::stuck;
  }
  void serve_while_stuck(std::uint32_t most_ms) noexcept final {
    host_.wake_notifiers(shard_);  // what the thread left in the queue for itself
    const std::uint64_t seq = seen_;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(most_ms);
    auto still_stuck = [&] { return callbacks_.load(std::memory_order_acquire) == seq; };
    bool counted = false;
    while (still_stuck() && try_own()) {
      if (!counted) metrics_.takeovers.add();  // once per stuck callback
      counted = true;
      // (The thread may have come back between our look and the token.)
      bool moved = false;
      for (int i = 0; i < 64 && still_stuck() && pump_pass(); ++i) moved = true;
      const bool more_time = std::chrono::steady_clock::now() < until;
      // Sleep in the kernel for what comes next: a completion, a submitter's
      // wake-up, or the thread, back from OnComplete, asking for its ring.
      if (!moved && more_time && still_stuck() && inbox_.prepare_to_sleep()) {
        pump_sleep(1);
        inbox_.awake();
      }
      disown();
      if (!more_time) return;
    }
  }

 protected:
  /// Subclasses call this first in their destructor: the thread uses their
  /// members.
  void stop_if_running() noexcept {
    if (thread_.joinable()) stop_and_join();
  }
  bool stopping() const noexcept { return stop_.load(std::memory_order_acquire); }

  /// What the poller sees of the engine: publish records, is a port open,
  /// log. Thread-safe.
  poller_host& host_;

  /// Idle: poll the inbox a little before paying for sleep and wake-up (an
  /// eventfd write by the next submitter, a few microseconds). True while
  /// the poller should keep polling; false once it is time to sleep.
  bool keep_polling() noexcept {
    if (idle_polls_ >= idle_poll_limit) {
      idle_polls_ = 0;
      return false;
    }
    // Yield now and then: host threads share the poller's CPU.
    if ((++idle_polls_ & 63) == 0)
      std::this_thread::yield();
    else
      cpu_relax();
    return true;
  }
  /// Work came: the next idle spell polls afresh.
  void worked() noexcept { idle_polls_ = 0; }
  unsigned index() const noexcept { return index_; }

  /// The kernel refused the poller's wait or submission: pause before the
  /// next try, spinning, then yielding, then (after 64 refusals in a row)
  /// sleeping a millisecond, so a refusal that persists does not burn a core.
  void after_refusal() noexcept {
    if (++refusals_ <= 64)
      refused_.pause();
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  /// The kernel took a call again.
  void refusals_over() noexcept {
    refusals_ = 0;
    refused_.reset();
  }

  /// Answers of the kernel a poller reports, each once in its life.
  enum fault : unsigned {
    fault_enter_nomem,    // io_uring_enter: ENOMEM
    fault_enter_dropped,  // io_uring_enter: EBADR
    fault_enter_other,    // io_uring_enter: an error iocm does not expect
    fault_wait_other,     // epoll_wait: an error iocm does not expect
    fault_receive_ahead,  // io_uring: no provided buffers or multishot receive here
    fault_carry_nomem,    // no memory to keep bytes received ahead over an Unbind
    fault_accept_ahead,   // io_uring: no multishot accept here
    fault_accept_full,    // a connection accepted ahead had no place and was closed
    fault_fixed_files,    // io_uring: no file table, or a descriptor it refused
  };
  /// Says `text` through the engine's log the first time `f` happens.
  void report_once(fault f, std::uint32_t level, const char* text) noexcept {
    if ((reported_ & (1u << f)) != 0) return;
    reported_ |= 1u << f;
    char line[512];
    std::snprintf(line, sizeof line, "%s-%u: %s", prefix_, index_, text);
    host_.log(level, line);
  }
  /// "<what> failed: Bad address (EFAULT); <then>", once, at `level`; no
  /// allocation.
  void report_refusal_once(fault f, std::uint32_t level, const char* what, int error,
                           const char* then) noexcept {
    if ((reported_ & (1u << f)) != 0) return;
    const char* name = ::strerrorname_np(error);
    const char* text = ::strerrordesc_np(error);
    char line[256];
    std::snprintf(line, sizeof line, "%s failed: %s (%s); %s", what,
                  text != nullptr ? text : "unknown error", name != nullptr ? name : "?", then);
    report_once(f, level, line);
  }
  /// A call the kernel refused that the poller retries: said once, as an error.
  void report_failure_once(fault f, const char* call, int error) noexcept {
    report_refusal_once(f, IOCM_LOG_ERROR, call, error, "retrying");
  }

  /// The poller's thread, holding the token: delivers `record` itself.
  /// The ring is free for others meanwhile; the thread takes it back after
  /// OnComplete (waking whoever sleeps in it, if the monitor drives it).
  void deliver_here(const completion& record) noexcept {
    const std::uint64_t seq = callbacks_.load(std::memory_order_relaxed);
    // Release: the monitor that sees the odd count and takes the token
    // finds the ring as we left it (disown's release, too).
    callbacks_.store(seq + 1, std::memory_order_release);
    disown();
    poller* const outer = tl_home_in_callback_;
    tl_home_in_callback_ = this;
    host_.deliver(record);
    tl_home_in_callback_ = outer;
    callbacks_.store(seq + 2, std::memory_order_release);
    for (unsigned i = 0; !try_own(); ++i) {
      // The monitor drives the ring and may sleep in it: wake it, and it
      // gives the ring back (again now and then: a wake-up may come
      // before it sleeps).
      if ((i & 63) == 0) wake();
      if (i < 64)
        cpu_relax();
      else
        std::this_thread::yield();
    }
  }
  /// A record the poller's thread keeps to deliver itself, and how many
  /// of the same harvest it queued without waking a notifier.
  struct kept_record {
    completion record;
    std::size_t quiet = 0;
  };
  /// The inline-delivery rule, the same for both pollers: from a harvest
  /// of at most inline_most_ records, while some notifier sleeps (handing
  /// over would cost a wake-up), keep the first. True when it kept one: the
  /// caller then publishes the rest without a wake-up and calls
  /// deliver_kept. A bigger harvest is a burst, and with every notifier
  /// awake a hand-off is free: everything goes to the notifiers, as before.
  bool keep_for_here(record_outbox& out, kept_record& k) noexcept {
    // Cheapest first: most passes make no record at all, and the count of
    // sleeping notifiers is a line the notifiers write.
    const std::size_t made = out.waiting();
    if (made == 0 || made > inline_most_ || !delivers_inline() ||
        !(inline_always_ || host_.a_notifier_sleeps()) || !out.take_first(k.record))
      return false;
    k.quiet = out.waiting();
    return true;
  }
  /// deliver_here(k.record), then as many queued records as the poller
  /// queued without waking a notifier, unless a spinning notifier took them
  /// first. Whatever it leaves in the queue (other records may have come
  /// first) gets a notifier woken: none may wait for this thread.
  void deliver_kept(const kept_record& k) noexcept {
    deliver_here(k.record);
    completion next;
    for (std::size_t i = 0; i < k.quiet && host_.take_queued(helper_, next); ++i)
      deliver_here(next);
    if (k.quiet != 0) host_.wake_notifiers(shard_);
  }
  /// From submit_direct, holding the token: an operation into the ring;
  /// false when there is no room for it now.
  virtual bool take_direct(inbox_item item) noexcept = 0;

  /// On the poller's thread: creates the kernel side. S_OK or why not.
  virtual hosting::HRESULT set_up() noexcept = 0;
  /// On the poller's thread, after a successful set_up: until stopping()
  /// and nothing is left.
  virtual void loop() = 0;

 private:
  void thread_main() {
    char name[16];
    std::snprintf(name, sizeof name, "%s-%u", prefix_, index_);
    os::name_current_thread(name);
    if (cpu_ >= 0) os::pin_current_thread(cpu_);
    record_pinning();
    os::block_sigpipe();
    const hosting::HRESULT hr = set_up();
    {
      std::lock_guard lock(start_mutex_);
      start_result_ = hr;
    }
    start_cv_.notify_one();
    if (hosting::FAILED(hr)) return;
    if (delivered_ == nullptr) {
      loop();
      return;
    }
    const delivery::outer_thread outer = host_.enter_thread(*delivered_);
    loop();
    delivery::leave_thread(outer);
  }

  /// The token (0: free, 1: held). The poller's thread holds it from the
  /// start and lets it go only inside deliver_here.
  bool try_own() noexcept {
    return owner_.load(std::memory_order_relaxed) == 0 &&
           owner_.exchange(1, std::memory_order_acquire) == 0;
  }
  void disown() noexcept { owner_.store(0, std::memory_order_release); }

  static constexpr unsigned idle_poll_limit = 512;  // empty rounds before the poller sleeps

  const unsigned index_;
  const int cpu_;
  unsigned reported_ = 0;  // the faults already reported, a bit each
  unsigned refusals_ = 0;  // kernel refusals in a row
  backoff refused_;
  unsigned idle_polls_ = 0;  // empty rounds since the last work
  const char* const prefix_;
  std::atomic<bool> stop_{false};
  bool inline_ready_ = false;  // started inline, not stopped yet
  std::mutex start_mutex_;
  std::condition_variable start_cv_;
  std::optional<hosting::HRESULT> start_result_;
  std::thread thread_;
  port_table::delivered_row* delivered_;  // null: the poller never delivers
  // The inline-delivery rule's numbers: the most records a harvest may
  // make and still be delivered here (3; IOCM_INLINE_ALL: any), and whether
  // that needs a notifier asleep (not with IOCM_INLINE_ALL).
  const std::size_t inline_most_;
  const bool inline_always_;
  completion_queue::consumer_token helper_;
  const std::size_t shard_;  // of the poller's lane
  std::atomic<std::uint32_t> owner_{1};
  // Odd while the poller's thread is inside an inline OnComplete; +1 on
  // entering and on leaving. Written by that thread only.
  std::atomic<std::uint64_t> callbacks_{0};
  std::uint64_t seen_ = 0;  // the monitor's last look at callbacks_
};

}  // namespace iocm::detail
