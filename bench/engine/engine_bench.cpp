// Engine benchmarks: nops through the whole engine (host thread -> poller
// inbox -> io_uring -> completion queue -> notifier -> OnComplete) against
// the same nops in a plain single-thread liburing loop, and the latency from
// Post to OnComplete with the notifier hot (spinning) and parked.
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "iocm/detail/backoff.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "iocm/mpmc_queue.h"

using namespace iocm::hosting;

namespace {

using clock_type = std::chrono::steady_clock;

struct slot {
  OVERLAPPED ov{};
  alignas(8) unsigned char host[IOCM_HOST_OVERLAPPED_SIZE]{};
  std::atomic<bool> busy{false};
  clock_type::time_point sent{};
};

struct bench_runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** p) override {
    *p = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD, DWORD, void* ov) override {
    auto* s = static_cast<slot*>(ov);
    if (record_latency) latency_ns = (clock_type::now() - s->sent).count();
    s->busy.store(false, std::memory_order_release);
    completed.fetch_add(1, std::memory_order_relaxed);
    return S_OK;
  }
  std::atomic<std::uint64_t> completed{0};
  bool record_latency = false;
  std::int64_t latency_ns = 0;  // written by the notifier before busy=false
};

/// One engine with a bound socket, set up outside the timed loops.
struct engine_under_test {
  explicit engine_under_test(std::uint32_t notifier_spin,
                             std::uint32_t backend = IOCM_BACKEND_URING) {
    iocm_config c;
    iocm_config_init(&c);
    c.backend = backend;  // named by the benchmark, never left to the environment
    c.pollers = 1;
    c.min_threads = 1;
    c.max_threads = 1;
    c.notifier_spin = notifier_spin;
    if (iocm_create_host_io_completion_manager(&c, &manager) != S_OK)
      throw std::runtime_error("iocm: engine creation failed");
    void* p = nullptr;
    manager->QueryInterface(IID_IIocmHostIo, &p);
    io = static_cast<IIocmHostIo*>(p);
    manager->SetCLRIoCompletionManager(&runtime);
    manager->CreateIoCompletionPort(&port);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::runtime_error("socketpair");
    handle = reinterpret_cast<HANDLE>(static_cast<intptr_t>(fds[0]));
    manager->Bind(port, handle);
  }
  ~engine_under_test() {
    io->Release();
    manager->Release();
    ::close(fds[0]);
    ::close(fds[1]);
  }
  bench_runtime runtime;
  IHostIoCompletionManager* manager = nullptr;
  IIocmHostIo* io = nullptr;
  HANDLE port = nullptr;
  HANDLE handle = nullptr;
  int fds[2] = {-1, -1};
};

/// Restores the calling thread's CPU mask when a benchmark ends: threads
/// started later inherit it, so a pinned main thread would squeeze every
/// following benchmark onto one CPU.
struct affinity_guard {
  affinity_guard() { pthread_getaffinity_np(pthread_self(), sizeof saved, &saved); }
  ~affinity_guard() { pthread_setaffinity_np(pthread_self(), sizeof saved, &saved); }
  cpu_set_t saved;
};

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

constexpr int ops_per_iteration = 1 << 16;
constexpr int window = 256;  // operations in flight
constexpr unsigned raw_batch = 64;

void engine_nop_iocm(benchmark::State& state, std::uint32_t backend) {
  affinity_guard keep;
  std::optional<engine_under_test> engine;
  try {
    engine.emplace(256, backend);
  } catch (const std::exception& ex) {
    state.SkipWithError(ex.what());
    return;
  }
  engine_under_test& e = *engine;
  std::vector<slot> slots(window);
  for (auto& s : slots) e.manager->InitializeHostOverlapped(&s.ov);
  // The poller is pinned to CPU 0, the notifier to the next CPU.
  if (const char* cpu = std::getenv("IOCM_BENCH_HOST_CPU")) pin_to(std::atoi(cpu));
  std::uint64_t submitted = 0;
  for (auto _ : state) {
    for (int i = 0; i < ops_per_iteration; ++i) {
      slot& s = slots[submitted++ % window];
      // Spin, then yield: on a small machine the notifier may share our core.
      for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
      s.busy.store(true, std::memory_order_relaxed);
      if (e.io->Nop(e.handle, &s.ov) != IOCM_E_IO_PENDING) {
        state.SkipWithError("nop refused");
        return;
      }
    }
  }
  for (auto& s : slots)
    for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
  if (e.runtime.completed.load() != submitted)
    state.SkipWithError("completions lost or duplicated");
  state.SetItemsProcessed(static_cast<std::int64_t>(submitted));
}

void engine_nop_liburing_raw(benchmark::State& state) {
  affinity_guard keep;
  io_uring ring;
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(256, &ring, &p) != 0 && io_uring_queue_init(256, &ring, 0) != 0) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  pin_to(1 % static_cast<int>(std::thread::hardware_concurrency()));
  std::uint64_t completed = 0, submitted = 0;
  for (auto _ : state) {
    for (int done = 0; done < ops_per_iteration; done += raw_batch) {
      for (unsigned i = 0; i < raw_batch; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_nop(sqe);
        sqe->user_data = ++submitted;
      }
      io_uring_submit_and_wait(&ring, raw_batch);
      io_uring_cqe* cqe;
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        benchmark::DoNotOptimize(cqe->user_data);
        ++n;
      }
      io_uring_cq_advance(&ring, n);
      completed += n;
    }
  }
  io_uring_queue_exit(&ring);
  if (completed != submitted) state.SkipWithError("completions lost");
  state.SetItemsProcessed(static_cast<std::int64_t>(completed));
}

/// Post -> OnComplete, one at a time; parked: the notifier sleeps between
/// posts (spin 0 and a pause), so each post pays the futex wake-up.
void post_latency(benchmark::State& state, bool parked) {
  affinity_guard keep;
  engine_under_test e(parked ? 0 : (1u << 30));
  e.runtime.record_latency = true;
  slot s;
  e.manager->InitializeHostOverlapped(&s.ov);
  pin_to(0);  // the poller's CPU (posts do not use it); the notifier has its own
  std::vector<std::int64_t> samples;
  samples.reserve(1 << 20);
  for (auto _ : state) {
    if (parked) {
      state.PauseTiming();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      state.ResumeTiming();
    }
    s.busy.store(true, std::memory_order_relaxed);
    s.sent = clock_type::now();
    if (e.io->Post(e.port, 0, 0, &s.ov) != IOCM_E_IO_PENDING) {
      state.SkipWithError("post refused");
      return;
    }
    for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
    samples.push_back(e.runtime.latency_ns);
  }
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

/// The two ways host threads can get submissions into a poller's ring, at
/// the ring level with the same work: `submitters` host threads each submit
/// `per_thread` nops; one poller thread owns the completion side.
///   ring_lock: host threads take a mutex, prep the SQE and io_uring_submit
///              (a syscall per operation); the poller only reaps.
///   iocm (the inbox iocm uses): host threads push into an MPMC ring; the poller drains it in
///              batches of 64, submits once per batch and reaps
///              (SINGLE_ISSUER|DEFER_TASKRUN, as the engine does).
constexpr int submitters = 2;
constexpr int per_thread = 1 << 17;

void submit_ring_lock(benchmark::State& state) {
  io_uring ring;
  if (io_uring_queue_init(1024, &ring, 0) != 0) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  std::mutex ring_mutex;
  std::uint64_t reaped_total = 0;
  for (auto _ : state) {
    std::atomic<bool> done{false};
    std::uint64_t reaped = 0;
    std::thread poller([&] {
      const std::uint64_t want = std::uint64_t{submitters} * per_thread;
      while (reaped < want) {
        io_uring_cqe* cqe;
        if (io_uring_wait_cqe(&ring, &cqe) != 0) continue;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe)++ n;
        io_uring_cq_advance(&ring, n);
        reaped += n;
      }
      done.store(true);
    });
    std::vector<std::thread> hosts;
    for (int t = 0; t < submitters; ++t)
      hosts.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i) {
          std::lock_guard lock(ring_mutex);
          io_uring_sqe* sqe;
          while ((sqe = io_uring_get_sqe(&ring)) == nullptr) io_uring_submit(&ring);
          io_uring_prep_nop(sqe);
          while (io_uring_submit(&ring) < 0) std::this_thread::yield();  // -EBUSY: reaper behind
        }
      });
    for (auto& h : hosts) h.join();
    poller.join();
    reaped_total += reaped;
  }
  io_uring_queue_exit(&ring);
  state.SetItemsProcessed(static_cast<std::int64_t>(reaped_total));
}

void submit_inbox(benchmark::State& state) {
  std::uint64_t reaped_total = 0;
  for (auto _ : state) {
    iocm::mpmc_queue<std::uintptr_t> inbox(iocm::queue_options{4096, 0, 64, nullptr, 0});
    std::uint64_t reaped = 0;
    std::thread poller([&] {
      io_uring ring;
      io_uring_params p{};
      p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
      if (io_uring_queue_init_params(1024, &ring, &p) != 0) io_uring_queue_init(1024, &ring, 0);
      const std::uint64_t want = std::uint64_t{submitters} * per_thread;
      std::uintptr_t items[64];
      unsigned inflight = 0;
      while (reaped < want) {
        const unsigned room =
            std::min(64u, std::min(io_uring_sq_space_left(&ring), 2048u - inflight));
        const std::size_t n = room == 0 ? 0 : inbox.try_dequeue_bulk(items, room);
        for (std::size_t i = 0; i < n; ++i) {
          io_uring_sqe* sqe = io_uring_get_sqe(&ring);
          io_uring_prep_nop(sqe);
          sqe->user_data = items[i];
        }
        inflight += static_cast<unsigned>(n);
        io_uring_submit_and_get_events(&ring);
        io_uring_cqe* cqe;
        unsigned head, k = 0;
        io_uring_for_each_cqe(&ring, head, cqe)++ k;
        io_uring_cq_advance(&ring, k);
        inflight -= k;
        reaped += k;
        if (n == 0 && k == 0) iocm::detail::cpu_relax();
      }
      io_uring_queue_exit(&ring);
    });
    std::vector<std::thread> hosts;
    for (int t = 0; t < submitters; ++t)
      hosts.emplace_back([&] {
        for (int i = 0; i < per_thread; ++i)
          for (iocm::detail::backoff b; !inbox.try_enqueue(static_cast<std::uintptr_t>(i) << 3);)
            b.pause();
      });
    for (auto& h : hosts) h.join();
    poller.join();
    reaped_total += reaped;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(reaped_total));
}

}  // namespace

BENCHMARK_CAPTURE(engine_nop_iocm, uring, IOCM_BACKEND_URING)
    ->Name("engine/nop/iocm")
    ->UseRealTime()
    ->MinTime(0.5);
// epoll has no kernel no-op: its nop completes on the poller, so this is the
// engine's own hand-offs (inbox, poller, queue, notifier) without a syscall.
BENCHMARK_CAPTURE(engine_nop_iocm, epoll, IOCM_BACKEND_EPOLL)
    ->Name("engine/nop/iocm_epoll")
    ->UseRealTime()
    ->MinTime(0.5);
BENCHMARK(engine_nop_liburing_raw)->Name("engine/nop/liburing_raw")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(post_latency, hot, false)
    ->Name("engine/post_latency/iocm_hot")
    ->Iterations(200000);
BENCHMARK_CAPTURE(post_latency, parked, true)
    ->Name("engine/post_latency/iocm_parked")
    ->Iterations(5000);

BENCHMARK(submit_inbox)->Name("engine/submit/iocm")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(submit_ring_lock)
    ->Name("engine/submit/ring_lock")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
