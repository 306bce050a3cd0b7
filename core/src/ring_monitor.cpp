// The ring monitor (ring_monitor.h).
#include "ring_monitor.h"

#include <chrono>

#include "os.h"

namespace iocm::detail {

void ring_monitor::start() {
  thread_ = std::thread([this] { run(); });
}

void ring_monitor::stop() noexcept {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ring_monitor::run() noexcept {
  os::name_current_thread("iocm-monitor");
  // It may enter a ring and submit a write to a pipe whose reader is gone,
  // as a poller does: EPIPE, not a signal.
  os::block_sigpipe();
  unsigned period_ms = quiet_period_ms;
  std::unique_lock lock(mutex_);
  for (;;) {
    if (period_ms != 0 &&
        stop_cv_.wait_for(lock, std::chrono::milliseconds(period_ms), [&] { return stopping_; }))
      return;
    if (stopping_) return;
    lock.unlock();
    bool inside = false, served = false;
    for (const auto& p : pollers_) {
      if (!p->delivers_inline()) continue;
      switch (p->watch()) {
        case poller::watch_state::quiet:
          break;
        case poller::watch_state::in_callback:
          inside = true;
          break;
        case poller::watch_state::stuck:
          p->serve_while_stuck(serve_turn_ms);
          served = true;
          break;
      }
    }
    // A stuck ring is looked at again at once: it is served turn by turn.
    period_ms = served ? 0 : inside ? watch_period_ms : quiet_period_ms;
    lock.lock();
  }
}

}  // namespace iocm::detail
