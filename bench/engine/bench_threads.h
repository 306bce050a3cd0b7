// What the engine benchmarks share about threads: pinning, and a guard that
// gives a benchmark's main thread its CPU mask back.
#pragma once

#include <pthread.h>
#include <sched.h>

namespace iocm_bench {

/// Restores the calling thread's CPU mask when a benchmark ends: threads
/// started later inherit it, so a pinned main thread would squeeze every
/// following benchmark onto one CPU.
struct affinity_guard {
  affinity_guard() { pthread_getaffinity_np(pthread_self(), sizeof saved, &saved); }
  ~affinity_guard() { pthread_setaffinity_np(pthread_self(), sizeof saved, &saved); }
  cpu_set_t saved;
};

inline void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/// Posts dispatched per benchmark iteration, and how many may be
/// outstanding at once (the same for iocm and every peer).
inline constexpr int posts_per_iteration = 1 << 16;
inline constexpr int post_window = 256;

}  // namespace iocm_bench
