// What the engine benchmarks share about threads: pinning, a guard that
// gives a benchmark's main thread its CPU mask back, and the process's CPU
// time per item, latency percentiles, and a wait that leaves the CPUs to
// the threads at work.
#pragma once

#include <sys/resource.h>

#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

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

/// The CPU time the whole process spends per item, reported beside
/// throughput as the counter cpu_ns_per_item: a benchmark whose threads spin
/// or sleep shows what its throughput costs, not only the host thread's
/// time (Google Benchmark's own CPU time). start() right before the timed
/// loop, stop() right after it, report() instead of SetItemsProcessed.
class cpu_meter {
 public:
  void start() noexcept {
    start_ = now();
    split(user_start_, sys_start_);
  }
  void stop() noexcept {
    spent_ += now() - start_;
    double user, sys;
    split(user, sys);
    user_ += user - user_start_;
    sys_ += sys - sys_start_;
  }
  /// cpu_ns_per_item (exact), and how it splits between user and system
  /// time (user_ns_per_item, sys_ns_per_item: the kernel's split, sampled).
  void report(benchmark::State& state, std::int64_t items) {
    state.SetItemsProcessed(items);
    if (items <= 0) return;
    const auto n = static_cast<double>(items);
    state.counters["cpu_ns_per_item"] = spent_ / n;
    state.counters["user_ns_per_item"] = user_ / n;
    state.counters["sys_ns_per_item"] = sys_ / n;
  }

 private:
  static double now() noexcept {
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
  }
  static void split(double& user, double& sys) noexcept {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    user = static_cast<double>(u.ru_utime.tv_sec) * 1e9 + u.ru_utime.tv_usec * 1e3;
    sys = static_cast<double>(u.ru_stime.tv_sec) * 1e9 + u.ru_stime.tv_usec * 1e3;
  }
  double start_ = 0, spent_ = 0;
  double user_start_ = 0, sys_start_ = 0, user_ = 0, sys_ = 0;
};

/// Waits without taking a core from the threads doing the work. A look a
/// millisecond: every wake-up costs the measured threads a context switch
/// on their cores (at 50 us, 20,000 a second were a quarter of the CPU
/// samples of echo_c64). Rates stay exact: the items counted are the ones
/// done in the time measured, overshoot included.
template <class Done>
void wait_until(Done done) {
  while (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

/// Latency samples (ns) as the counters p50_ns, p99_ns, p999_ns and max_ns
/// that the report reads; sorts them.
inline void report_latency(benchmark::State& state, std::vector<std::int64_t>& samples) {
  if (samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  auto pct = [&](double q) {
    return static_cast<double>(
        samples[std::min(samples.size() - 1, static_cast<std::size_t>(q * samples.size()))]);
  };
  state.counters["p50_ns"] = pct(0.50);
  state.counters["p99_ns"] = pct(0.99);
  state.counters["p999_ns"] = pct(0.999);
  state.counters["max_ns"] = static_cast<double>(samples.back());
}

/// Posts dispatched per benchmark iteration, and how many may be
/// outstanding at once (the same for iocm and every peer).
inline constexpr int posts_per_iteration = 1 << 16;
inline constexpr int post_window = 256;

}  // namespace iocm_bench
