// How a thread waits for the engine without deadlocking it. A thread may
// call Close, Unbind or Cancel from inside OnComplete, and what it waits for
// may be records only it can deliver (it is the only notifier, or it owns a
// pumped engine's pump), or an inbox only its pump can empty. So every wait
// delivers meanwhile, or moves the inbox on, where that is the caller's to
// do. engine_core implements it: it knows whether notifiers or a pump
// deliver.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

#include "iocm/detail/backoff.h"

namespace iocm::detail {

/// How long a thread waits for room in a full inbox or queue before its
/// request is refused (ERROR_NO_SYSTEM_RESOURCES: the engine is saturated).
/// Time, not a count of tries: how long a yield lasts depends on how many
/// threads share the cores, and a busy machine must not turn a slow engine
/// into a refusing one.
inline constexpr std::chrono::milliseconds room_wait_limit{1000};

/// The clock of one wait for room: again() after each try that found none.
class room_wait {
 public:
  /// False once the wait has lasted room_wait_limit. Reads the clock on the
  /// first call and every 64th after it: a try costs far less than that.
  bool again() noexcept {
    if ((tries_++ & 63) != 0) return true;
    const auto now = std::chrono::steady_clock::now();
    if (tries_ == 1) since_ = now;
    return now - since_ < room_wait_limit;
  }

 private:
  std::uint32_t tries_ = 0;
  std::chrono::steady_clock::time_point since_;
};

class engine_waits {
 public:
  /// A full inbox: waits a moment, or, in a pumped engine that no other
  /// thread is pumping, moves the inbox on itself. Never call it with the
  /// bind lock held: a pump that empties the inbox may want it.
  virtual void wait_for_inbox() noexcept = 0;
  /// On a thread that delivers this engine's records, inside OnComplete:
  /// delivers one record (or the rest of its batch), nested; false when
  /// there was nothing to deliver, or it is not this thread's to do.
  virtual bool help_deliver() noexcept = 0;

  /// Waits until done(), delivering meanwhile when called from inside
  /// OnComplete.
  template <class Done>
  void wait_delivering(Done done) noexcept {
    backoff wait;
    for (unsigned rounds = 0; !done(); ++rounds) {
      if (help_deliver()) continue;
      if (rounds < 1000)
        wait.pause();
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 protected:
  ~engine_waits() = default;
};

}  // namespace iocm::detail
