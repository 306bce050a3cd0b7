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
#include <stdexcept>
#include <thread>
#include <vector>

#include "iocm/detail/backoff.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"

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
  explicit engine_under_test(std::uint32_t notifier_spin) {
    iocm_config c;
    iocm_config_init(&c);
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

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

constexpr int ops_per_iteration = 1 << 16;
constexpr int window = 256;  // operations in flight
constexpr unsigned raw_batch = 64;

void engine_nop_iocm(benchmark::State& state) {
  engine_under_test e(256);
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

}  // namespace

BENCHMARK(engine_nop_iocm)->Name("engine/nop/iocm")->UseRealTime()->MinTime(0.5);
BENCHMARK(engine_nop_liburing_raw)->Name("engine/nop/liburing_raw")->UseRealTime()->MinTime(0.5);
BENCHMARK_CAPTURE(post_latency, hot, false)
    ->Name("engine/post_latency/iocm_hot")
    ->Iterations(200000);
BENCHMARK_CAPTURE(post_latency, parked, true)
    ->Name("engine/post_latency/iocm_parked")
    ->Iterations(5000);

BENCHMARK_MAIN();
