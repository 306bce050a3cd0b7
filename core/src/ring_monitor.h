// The ring monitor: the one engine thread that sees to it that a callback
// which blocks never stalls its poller's ring (docs/ENGINE.md, "Delivery
// where the completion lands"). Go's sysmon does the same for goroutines
// stuck in a system call.
//
// A poller that delivers inline lets its ring go while its thread is inside
// OnComplete. The monitor looks at every such poller now and then: every
// 10 ms while none is inside a callback, every millisecond while one is.
// A poller seen inside the same callback at two looks in a row is stuck;
// the monitor then drives its ring itself (its inbox into the kernel, the
// kernel's completions into the queue, for the notifiers) until the
// poller's thread comes back and takes the ring again.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "poller.h"

namespace iocm::detail {

class ring_monitor {
 public:
  explicit ring_monitor(const std::vector<std::unique_ptr<poller>>& pollers) : pollers_(pollers) {}
  ~ring_monitor() { stop(); }
  ring_monitor(const ring_monitor&) = delete;
  ring_monitor& operator=(const ring_monitor&) = delete;

  /// Starts the thread. Throws std::system_error when it cannot.
  void start();
  /// Joins the thread; before the pollers stop. Not from OnComplete.
  void stop() noexcept;

  static constexpr unsigned quiet_period_ms = 10;  // no poller inside a callback
  static constexpr unsigned watch_period_ms = 1;   // one inside a callback: stuck after 1-2 ms
  static constexpr unsigned serve_turn_ms = 5;     // a stuck ring's turn before the next look

 private:
  void run() noexcept;

  const std::vector<std::unique_ptr<poller>>& pollers_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace iocm::detail
