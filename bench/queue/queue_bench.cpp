// queue/<scenario>/<impl>: iocm's MPMC queue against its peers, in one run.
//
// Every transfer scenario pins its threads, releases them together from a
// barrier, gives each consumer an exact quota, and checks afterwards that the
// records carried add up (count and checksum of producer ids and sequence
// numbers); a run that loses or duplicates a record is reported as an error,
// not as a speed. Time is wall time from the barrier to the last consumer.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "iocm/detail/backoff.h"
#include "queue_adapters.h"

namespace iocm_bench {
namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::size_t queue_capacity = 16384;

/// The CPUs this process may run on; threads are pinned round-robin over them.
const std::vector<int>& allowed_cpus() {
  static const std::vector<int> cpus = [] {
    std::vector<int> v;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0)
      for (int i = 0; i < CPU_SETSIZE; ++i)
        if (CPU_ISSET(i, &set)) v.push_back(i);
    if (v.empty()) v.push_back(0);
    return v;
  }();
  return cpus;
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void pin_to(std::size_t index) {
  const auto& cpus = allowed_cpus();
  pin_to_cpu(cpus[index % cpus.size()]);
}

/// Where a transfer's threads run. `together`: thread i (producers first,
/// then consumers) on CPU i, round-robin, so that on a small machine a
/// producer and a consumer share each CPU. `apart`: producers round-robin on
/// the first half of the CPUs, consumers on the second half, as an engine
/// places pollers and notifiers on cores of their own (with one CPU, both
/// halves are that CPU).
enum class layout { together, apart };

void pin_producer(layout how, std::size_t p) {
  const auto& cpus = allowed_cpus();
  if (how == layout::together) return pin_to(p);
  const std::size_t half = cpus.size() < 2 ? cpus.size() : cpus.size() / 2;
  pin_to_cpu(cpus[p % half]);
}

void pin_consumer(layout how, std::size_t producers, std::size_t c) {
  const auto& cpus = allowed_cpus();
  if (how == layout::together) return pin_to(producers + c);
  const std::size_t half = cpus.size() < 2 ? 0 : cpus.size() / 2;
  pin_to_cpu(cpus[half + c % (cpus.size() - half)]);
}

/// User and system CPU time of the whole process so far, in seconds.
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

completion make_item(std::uint32_t producer, std::uint32_t seq) {
  return completion{producer, seq, reinterpret_cast<void*>(std::uintptr_t{seq} + 1)};
}
std::uint64_t item_sum(const completion& c) {
  return (std::uint64_t{c.error} << 32) + c.bytes + reinterpret_cast<std::uintptr_t>(c.overlapped);
}

struct transfer_result {
  double seconds;
  bool ok;
  std::string error;
  // What the threads waited on: pushes refused (the queue full) and pops
  // that found nothing, in all; yields among the backoffs they took.
  std::uint64_t full = 0, empty = 0, yields = 0;
};

/// Moves per_producer records from each producer to the consumers, in
/// batches of `batch` (1 = single operations). With `idle` > 0, the queue
/// also has that many producers that each put one record in before the run
/// (taken out again) and then keep their lanes, idle: lanes the consumers
/// pass over, as a notifier passes over the lanes of idle pollers.
template <class Q>
transfer_result transfer(std::size_t producers, std::size_t consumers, std::uint32_t per_producer,
                         std::size_t batch, std::size_t idle = 0, layout how = layout::together) {
  // Each working producer's lane holds as much as without the idle ones.
  Q q(queue_capacity * (producers + idle) / producers, producers + idle, consumers);
  std::vector<typename Q::producer> idlers;
  idlers.reserve(idle);
  for (std::size_t i = 0; i < idle; ++i) {
    idlers.push_back(q.make_producer());
    if (!q.push(idlers.back(), make_item(0, 0)))
      return {0, false, "an idle lane refused its one record"};
  }
  {
    auto drain = q.make_consumer();
    completion x{};
    std::size_t drained = 0;
    while (drained < idle && q.pop(drain, x)) ++drained;
    if (drained != idle) return {0, false, "the idle lanes' records did not all come out"};
  }
  const std::uint64_t total = std::uint64_t{per_producer} * producers;
  std::vector<std::uint64_t> quota(consumers, total / consumers);
  quota[0] += total % consumers;

  std::atomic<std::size_t> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::uint64_t> got(consumers, 0), sums(consumers, 0);
  std::atomic<std::uint64_t> full{0}, empty{0}, yields{0};
  std::vector<clock_type::time_point> finished(consumers);
  std::vector<std::thread> threads;
  const std::size_t n_threads = producers + consumers;

  auto wait_for_start = [&] {
    ready.fetch_add(1, std::memory_order_acq_rel);
    while (!go.load(std::memory_order_acquire)) iocm::detail::cpu_relax();
  };

  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      pin_producer(how, p);
      auto handle = q.make_producer();
      std::vector<completion> buf(batch);
      iocm::detail::backoff wait;
      std::uint64_t refused = 0, yielded = 0;
      wait_for_start();
      for (std::uint32_t seq = 0; seq < per_producer;) {
        const std::size_t n = std::min<std::size_t>(batch, per_producer - seq);
        std::size_t put;
        if (batch == 1) {
          put = q.push(handle, make_item(static_cast<std::uint32_t>(p), seq)) ? 1 : 0;
        } else {
          for (std::size_t i = 0; i < n; ++i)
            buf[i] = make_item(static_cast<std::uint32_t>(p), seq + static_cast<std::uint32_t>(i));
          put = q.push_bulk(handle, buf.data(), n);
        }
        if (put == 0) {
          ++refused;
          yielded += wait.pause() ? 1 : 0;
          continue;
        }
        wait.reset();
        // A partial bulk push: the rest goes again with the next batch.
        seq += static_cast<std::uint32_t>(put);
      }
      full.fetch_add(refused);
      yields.fetch_add(yielded);
    });
  }
  for (std::size_t c = 0; c < consumers; ++c) {
    threads.emplace_back([&, c] {
      pin_consumer(how, producers, c);
      auto handle = q.make_consumer();
      std::vector<completion> buf(batch);
      iocm::detail::backoff wait;
      std::uint64_t count = 0, sum = 0, missed = 0, yielded = 0;
      wait_for_start();
      while (count < quota[c]) {
        std::size_t n;
        if (batch == 1) {
          n = q.pop(handle, buf[0]) ? 1 : 0;
        } else {
          n = q.pop_bulk(handle, buf.data(), std::min<std::uint64_t>(batch, quota[c] - count));
        }
        if (n == 0) {
          ++missed;
          yielded += wait.pause() ? 1 : 0;
          continue;
        }
        wait.reset();
        for (std::size_t i = 0; i < n; ++i) sum += item_sum(buf[i]);
        count += n;
      }
      finished[c] = clock_type::now();
      got[c] = count;
      sums[c] = sum;
      empty.fetch_add(missed);
      yields.fetch_add(yielded);
    });
  }
  while (ready.load(std::memory_order_acquire) != n_threads) std::this_thread::yield();
  const auto start = clock_type::now();
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  auto end = start;
  std::uint64_t count = 0, sum = 0, expected_sum = 0;
  for (std::size_t c = 0; c < consumers; ++c) {
    end = std::max(end, finished[c]);
    count += got[c];
    sum += sums[c];
  }
  for (std::uint32_t p = 0; p < producers; ++p)
    for (std::uint32_t s = 0; s < per_producer; ++s) expected_sum += item_sum(make_item(p, s));
  transfer_result r{std::chrono::duration<double>(end - start).count(),
                    true,
                    {},
                    full.load(),
                    empty.load(),
                    yields.load()};
  if (count != total || sum != expected_sum) {
    r.ok = false;
    r.error = "carried " + std::to_string(count) + " of " + std::to_string(total) +
              " records, checksum " + (sum == expected_sum ? "ok" : "WRONG");
  }
  return r;
}

template <class Q>
void bm_transfer(benchmark::State& state, std::size_t producers, std::size_t consumers,
                 std::size_t batch, std::size_t idle = 0, layout how = layout::together) {
  // Oversubscribed runs switch threads more; fewer records keep them short.
  const std::uint32_t per_producer =
      static_cast<std::uint32_t>((producers + consumers > 2 ? (1u << 18) : (1u << 20)) / producers);
  std::uint64_t items = 0, full = 0, empty = 0, yields = 0;
  double cpu_seconds = 0;
  for (auto _ : state) {
    const double cpu_before = process_cpu_seconds();
    const transfer_result r = transfer<Q>(producers, consumers, per_producer, batch, idle, how);
    cpu_seconds += process_cpu_seconds() - cpu_before;
    if (!r.ok) {
      state.SkipWithError(r.error.c_str());
      return;
    }
    state.SetIterationTime(r.seconds);
    items += std::uint64_t{per_producer} * producers;
    full += r.full;
    empty += r.empty;
    yields += r.yields;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(items));
  // CPU time of every thread (spinning or asleep) per record carried.
  const auto per_item = [&](double v) { return items ? v / static_cast<double>(items) : 0; };
  state.counters["cpu_ns_per_item"] = per_item(cpu_seconds * 1e9);
  // Why a run was slow: per record carried, the pushes the queue refused
  // (full), the pops that found nothing, and the yields waiting took.
  state.counters["full_per_item"] = per_item(static_cast<double>(full));
  state.counters["empty_per_item"] = per_item(static_cast<double>(empty));
  state.counters["yields_per_item"] = per_item(static_cast<double>(yields));
}

/// Round trip through two queues: A pushes into q1 and waits for the echo
/// on q2; B echoes. Reports nanoseconds per round trip.
template <class Q>
void bm_pingpong(benchmark::State& state) {
  constexpr std::uint32_t round_trips = 100'000;
  double total_seconds = 0;
  std::uint64_t trips = 0;
  for (auto _ : state) {
    Q there(queue_capacity, 1, 1), back(queue_capacity, 1, 1);
    std::atomic<int> ready{0};
    std::atomic<bool> mismatch{false};
    std::thread echo([&] {
      pin_to(1);
      auto in = there.make_consumer();
      auto out = back.make_producer();
      iocm::detail::backoff wait;
      ready.fetch_add(1);
      for (std::uint32_t i = 0; i < round_trips; ++i) {
        completion x{};
        while (!there.pop(in, x)) iocm::detail::cpu_relax();
        if (x.bytes != i) mismatch.store(true);
        while (!back.push(out, x)) iocm::detail::cpu_relax();
      }
    });
    pin_to(0);
    auto out = there.make_producer();
    auto in = back.make_consumer();
    while (ready.load() != 1) std::this_thread::yield();
    const auto start = clock_type::now();
    for (std::uint32_t i = 0; i < round_trips; ++i) {
      while (!there.push(out, make_item(0, i))) iocm::detail::cpu_relax();
      completion x{};
      while (!back.pop(in, x)) iocm::detail::cpu_relax();
      if (x.bytes != i) mismatch.store(true);
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    echo.join();
    if (mismatch.load()) {
      state.SkipWithError("a record came back wrong");
      return;
    }
    state.SetIterationTime(seconds);
    total_seconds += seconds;
    trips += round_trips;
  }
  state.counters["roundtrip_ns"] = trips ? total_seconds * 1e9 / static_cast<double>(trips) : 0;
  state.SetItemsProcessed(static_cast<std::int64_t>(trips));
}

/// One enqueue followed by one dequeue on one thread: the bare cost of a pair.
template <class Q>
void bm_single_thread(benchmark::State& state) {
  pin_to(0);
  Q q(queue_capacity, 1, 1);
  auto p = q.make_producer();
  auto c = q.make_consumer();
  std::uint32_t i = 0;
  bool ok = true;
  for (auto _ : state) {
    ok &= q.push(p, make_item(0, i));
    completion x{};
    ok &= q.pop(c, x) && x.bytes == i;
    benchmark::DoNotOptimize(x);
    ++i;
  }
  if (!ok) state.SkipWithError("a pair lost or changed its record");
  state.SetItemsProcessed(state.iterations());
}

/// queue/empty_poll_lanes_<n>/<impl>: one dequeue attempt on an empty
/// queue whose `lanes` producers have each enqueued once (every lane was
/// used, then drained). One thread, so every line is in its cache: the
/// lower bound of an idle consumer's poll, and how it grows with the lanes
/// it scans (docs/SCALE.md).
template <class Q>
void bm_empty_poll(benchmark::State& state, std::size_t lanes) {
  pin_to(0);
  Q q(64 * lanes, lanes, 1);  // 64 records a lane
  std::vector<typename Q::producer> producers;
  producers.reserve(lanes);
  for (std::size_t i = 0; i < lanes; ++i) producers.push_back(q.make_producer());
  auto c = q.make_consumer();
  std::size_t taken = 0;
  for (std::size_t i = 0; i < lanes; ++i)
    if (!q.push(producers[i], make_item(static_cast<std::uint32_t>(i), 0))) {
      state.SkipWithError("a lane refused its one record");
      return;
    }
  completion x{};
  while (q.pop(c, x)) ++taken;
  if (taken != lanes) {
    state.SkipWithError("the records put in did not all come out");
    return;
  }
  std::size_t found = 0;
  for (auto _ : state) {
    found += q.pop(c, x) ? 1 : 0;
    benchmark::DoNotOptimize(x);
  }
  if (found != 0) state.SkipWithError("an empty queue gave a record");
  state.SetItemsProcessed(state.iterations());
}

template <class Q>
void register_empty_polls() {
  for (const std::size_t lanes : {1, 8, 64, 256})
    benchmark::RegisterBenchmark(
        ("queue/empty_poll_lanes_" + std::to_string(lanes) + "/" + Q::name).c_str(),
        [lanes](benchmark::State& s) { bm_empty_poll<Q>(s, lanes); })
        ->MinTime(0.1);
}

/// queue/<scenario>/<Q::name>: `p` producers to `c` consumers in batches of `b`.
template <class Q>
void transfer_case(const char* scenario, std::size_t p, std::size_t c, std::size_t b,
                   std::size_t idle = 0, layout how = layout::together) {
  benchmark::RegisterBenchmark(
      ("queue/" + std::string(scenario) + "/" + Q::name).c_str(),
      [p, c, b, idle, how](benchmark::State& s) { bm_transfer<Q>(s, p, c, b, idle, how); })
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(0.15);
}

/// queue/blocking_<scenario>/<impl>: consumers that wait instead of
/// spinning (iocm::blocking_mpmc_queue, moodycamel's BlockingConcurrentQueue).
template <class Q>
void register_blocking() {
  transfer_case<Q>("blocking_spsc", 1, 1, 1);
  transfer_case<Q>("blocking_4x4", 4, 4, 1);
  transfer_case<Q>("blocking_8x8", 8, 8, 1);
}

template <class Q>
void register_impl(bool bulk_only = false) {
  const std::string impl = Q::name;
  transfer_case<Q>("spsc_bulk32", 1, 1, 32);
  if (bulk_only) return;
  transfer_case<Q>("spsc_single", 1, 1, 1);
  transfer_case<Q>("mpsc_2x1", 2, 1, 1);
  transfer_case<Q>("mpmc_2x2", 2, 2, 1);
  transfer_case<Q>("mpmc_4x4", 4, 4, 1);
  // The same two by two with producers and consumers on CPUs of their own
  // (on 2 CPUs: both producers on one, both consumers on the other).
  transfer_case<Q>("mpmc_2x2_apart", 2, 2, 1, 0, layout::apart);
  // More threads than this machine's CPUs, 4 and 8 times over: a preempted
  // thread holding a claimed slot stalls whoever waits on it.
  transfer_case<Q>("mpmc_8x8", 8, 8, 1);
  transfer_case<Q>("mpmc_16x16", 16, 16, 1);
  // 64 producer lanes of which 62 are idle: what a notifier of a 64-poller
  // engine pays when two pollers are busy.
  transfer_case<Q>("mpmc_2x2_64lanes", 2, 2, 1, 62);
  benchmark::RegisterBenchmark(("queue/pingpong/" + impl).c_str(), bm_pingpong<Q>)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond)
      ->MinTime(0.1);
  benchmark::RegisterBenchmark(("queue/single_thread/" + impl).c_str(), bm_single_thread<Q>)
      ->MinTime(0.1);
}

}  // namespace
}  // namespace iocm_bench

int main(int argc, char** argv) {
  using namespace iocm_bench;
  register_impl<iocm_lanes>();
  register_impl<iocm_shared>();
  register_impl<iocm_sharded<1>>();
  register_impl<iocm_sharded<2>>();
  register_impl<moodycamel_tokens>();
  register_impl<moodycamel_bulk>(/*bulk_only=*/true);
#if IOCM_HAVE_ATOMIC_QUEUE
  register_impl<atomic_queue_optimist>();
#endif
  register_impl<xenium_vyukov>();
  register_impl<boost_lockfree>();
  register_impl<tbb_bounded>();
  register_impl<mutex_ring>();
  register_blocking<iocm_blocking>();
  register_blocking<moodycamel_blocking>();
  register_impl<iocm_summary>();
  register_empty_polls<iocm_lanes>();
  register_empty_polls<iocm_summary>();
  register_empty_polls<iocm_sharded<2>>();
  register_empty_polls<moodycamel_tokens>();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
