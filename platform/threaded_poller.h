// What both backends' pollers share: a thread that names and pins itself,
// blocks SIGPIPE, sets up its kernel side, reports that to start(), then
// runs the backend's loop until stop_and_join(). A pumped engine's poller
// has no thread: start_inline() sets it up on the caller's thread, the
// engine's pump runs it pass by pass, and stop_and_join() runs the loop's
// last part (until nothing is in flight) on the caller's thread.
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

namespace iocm::detail {

class threaded_poller : public poller {
 public:
  threaded_poller(const poller_setup& setup, const char* name_prefix)
      : poller(setup.inbox_capacity, setup.inbox_memory),
        host_(*setup.host),
        index_(setup.index),
        cpu_(setup.cpu),
        prefix_(name_prefix) {}

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
    const hosting::HRESULT hr = set_up();
    inline_ready_ = hosting::SUCCEEDED(hr);
    return hr;
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
  };
  /// Says `text` through the engine's log the first time `f` happens.
  void report_once(fault f, std::uint32_t level, const char* text) noexcept {
    if ((reported_ & (1u << f)) != 0) return;
    reported_ |= 1u << f;
    char line[512];
    std::snprintf(line, sizeof line, "%s-%u: %s", prefix_, index_, text);
    host_.log(level, line);
  }
  /// "<call> failed: Bad address (EFAULT); retrying", once; no allocation.
  void report_failure_once(fault f, const char* call, int error) noexcept {
    if ((reported_ & (1u << f)) != 0) return;
    const char* name = ::strerrorname_np(error);
    const char* text = ::strerrordesc_np(error);
    char line[256];
    std::snprintf(line, sizeof line, "%s failed: %s (%s); retrying", call,
                  text != nullptr ? text : "unknown error", name != nullptr ? name : "?");
    report_once(f, IOCM_LOG_ERROR, line);
  }

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
    if (hosting::SUCCEEDED(hr)) loop();
  }

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
};

}  // namespace iocm::detail
