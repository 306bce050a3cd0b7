// Rows that show what the engine's dispatch costs:
//   file_randread_qd<N>/iocm_cont  the same 4 KiB reads, each issued from
//                inside the OnComplete of the one before (as a runtime's
//                async continuation issues its next read), N chains at once
//   post_latency/futex_floor       the floor under a parked notifier's
//                latency: one futex wake-up between two pinned threads, from
//                the waker's store to the sleeper running, in the same run
#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bench_io.h"
#include "bench_threads.h"
#include "engine_under_test.h"

using namespace iocm::hosting;
using namespace iocm_bench;

namespace {

/// One chain of reads: its slot and its own offsets.
struct chain : iocm::overlapped {
  std::atomic<bool> busy{false};  // a read of this chain is in flight
  offsets where;
  char* buffer = nullptr;
};

/// Issues each chain's next read from inside the OnComplete of its last one
/// (on the notifier), until stopped.
class continuation_runtime final : public runtime_base {
 public:
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    auto& c = *static_cast<chain*>(static_cast<iocm::overlapped*>(ov));
    if (error != 0 || bytes != read_bytes) failed_.store(true, std::memory_order_relaxed);
    completed_.fetch_add(1, std::memory_order_relaxed);
    if (stopping_.load(std::memory_order_acquire) || failed_.load(std::memory_order_relaxed)) {
      c.busy.store(false, std::memory_order_release);
      return S_OK;
    }
    issue(c);
    return S_OK;
  }

  void start(IIocmHostIo* io, int fd, std::vector<chain>& chains) {
    io_ = io;
    file_ = reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd));
    for (chain& c : chains) {
      c.busy.store(true, std::memory_order_relaxed);
      issue(c);
    }
  }
  void stop() { stopping_.store(true, std::memory_order_release); }
  std::uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  std::uint64_t issued() const { return issued_.load(std::memory_order_relaxed); }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  void issue(chain& c) {
    c.set_offset(c.where.next());
    issued_.fetch_add(1, std::memory_order_relaxed);
    if (io_->Read(file_, c.buffer, read_bytes, &c.ov) != IOCM_E_IO_PENDING) {
      issued_.fetch_sub(1, std::memory_order_relaxed);
      failed_.store(true, std::memory_order_relaxed);
      c.busy.store(false, std::memory_order_release);
    }
  }

  IIocmHostIo* io_ = nullptr;
  HANDLE file_ = nullptr;
  std::atomic<bool> stopping_{false}, failed_{false};
  std::atomic<std::uint64_t> completed_{0}, issued_{0};
};

void file_randread_iocm_cont(benchmark::State& state, int depth, std::uint32_t flags) {
  cpu_meter cpu;
  affinity_guard keep;
  continuation_runtime runtime;
  std::uint64_t completed = 0;
  {
    std::optional<engine_under_test> engine;
    std::optional<cached_file> file;
    try {
      engine.emplace(256, IOCM_BACKEND_URING, &runtime, flags);
      file.emplace();
      engine->bind(file->fd);
    } catch (const std::exception& ex) {
      state.SkipWithError(ex.what());
      return;
    }
    std::vector<chain> chains(static_cast<std::size_t>(depth));
    std::vector<char> buffers(chains.size() * read_bytes);
    for (std::size_t k = 0; k < chains.size(); ++k) chains[k].buffer = &buffers[k * read_bytes];
    runtime.start(engine->io, file->fd, chains);
    cpu.start();
    for (auto _ : state) {
      const std::uint64_t target = runtime.completed() + reads_per_iteration;
      wait_until([&] { return runtime.completed() >= target || runtime.failed(); });
    }
    cpu.stop();
    runtime.stop();
    for (const chain& c : chains)
      wait_until([&] { return !c.busy.load(std::memory_order_acquire); });
    completed = runtime.completed();
  }
  if (runtime.failed())
    state.SkipWithError("a read failed, came back short or was refused");
  else if (completed != runtime.issued())
    state.SkipWithError("completions lost or duplicated");
  cpu.report(state, static_cast<std::int64_t>(completed));
}

long futex(std::atomic<std::uint32_t>& word, int op, std::uint32_t value) {
  return ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), op, value, nullptr, nullptr,
                   0);
}

/// One futex wake-up, as a parked notifier pays it: the sleeper (CPU 1)
/// waits in the kernel; the waker (CPU 0) stores the word, wakes it, and the
/// sleeper notes when it runs. Between wake-ups the waker pauses 200 us, as
/// post_latency/iocm_parked does, so the sleeper is really asleep.
void futex_floor(benchmark::State& state) {
  affinity_guard keep;
  using clock = std::chrono::steady_clock;
  std::atomic<std::uint32_t> word{0};  // 0: sleep; 1: wake up; 2: leave
  std::atomic<std::int64_t> woke_ns{0};
  const int cpus = static_cast<int>(std::thread::hardware_concurrency());
  std::thread sleeper([&] {
    pin_to(1 % cpus);
    for (;;) {
      std::uint32_t w;
      while ((w = word.load(std::memory_order_acquire)) == 0) futex(word, FUTEX_WAIT_PRIVATE, 0);
      if (w == 2) return;
      woke_ns.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
      word.store(0, std::memory_order_release);
    }
  });
  pin_to(0);
  std::vector<std::int64_t> samples;
  samples.reserve(1 << 16);
  for (auto _ : state) {
    state.PauseTiming();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    state.ResumeTiming();
    const std::int64_t sent = clock::now().time_since_epoch().count();
    word.store(1, std::memory_order_release);
    futex(word, FUTEX_WAKE_PRIVATE, 1);
    while (word.load(std::memory_order_acquire) != 0) {
    }
    samples.push_back(woke_ns.load(std::memory_order_relaxed) - sent);
  }
  word.store(2, std::memory_order_release);
  futex(word, FUTEX_WAKE_PRIVATE, 1);
  sleeper.join();
  report_latency(state, samples);
}

}  // namespace

BENCHMARK(futex_floor)->Name("engine/post_latency/futex_floor")->Iterations(5000);

const bool registered_dispatch = [] {
  for (const int qd : file_depths)
    for (const std::uint32_t flags : {0u, std::uint32_t{IOCM_HANDOFF}})
      benchmark::RegisterBenchmark(("engine/file_randread_qd" + std::to_string(qd) +
                                    (flags != 0 ? "/iocm_cont_handoff" : "/iocm_cont"))
                                       .c_str(),
                                   file_randread_iocm_cont, qd, flags)
          ->UseRealTime()
          ->MinTime(0.5);
  return true;
}();
