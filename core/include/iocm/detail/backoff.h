// iocm/detail/backoff.h — the spin-then-yield wait used by iocm's own waiting
// loops (benchmarks and tests use it too, so every queue waits the same way).
#pragma once

#include <thread>

namespace iocm::detail {

/// Tells the core we are spinning: frees the sibling hyper-thread and saves
/// power; no memory effect.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

/// Spin a little, then give the core away: on an oversubscribed machine the
/// thread we wait for may need this very core to make progress.
class backoff {
 public:
  /// True when it gave the core away (a yield), false when it spun.
  bool pause() noexcept {
    if (spins_ < spin_limit) {
      for (unsigned i = 0; i < (1u << spins_); ++i) cpu_relax();
      ++spins_;
      return false;
    }
    std::this_thread::yield();
    return true;
  }
  void reset() noexcept { spins_ = 0; }

 private:
  static constexpr unsigned spin_limit = 6;  // up to 64 pauses, about a microsecond
  unsigned spins_ = 0;
};

}  // namespace iocm::detail
