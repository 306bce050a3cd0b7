// iocm-scale-sweep: one point of scripts/scale. An engine with P pollers and
// N notifiers (min = max threads) carries Nops from S producer threads, each
// keeping W in flight on eventfds bound across the pollers, for a fixed
// time. Prints one JSON object: operations per second, and the process's CPU
// time per operation (every thread, spinning or not).
//
// usage: iocm-scale-sweep --pollers P --notifiers N --producers S
//                         [--window W] [--seconds T] [--backend uring|epoll]
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "iocm/cache_line.h"
#include "iocm/engine.h"

namespace {

/// One in-flight slot of a producer: its OVERLAPPED, and whether it has
/// completed (set by the notifier, cleared by the producer).
struct alignas(iocm::cache_line_size) slot {
  iocm::overlapped o;
  std::atomic<std::uint32_t> free{1};
};

struct counting_handler final : iocm::completion_handler {
  std::atomic<std::uint64_t> failed{0};
  void on_complete(std::uint32_t error, std::uint32_t,
                   iocm::hosting::OVERLAPPED* ov) noexcept override {
    if (error != 0) failed.fetch_add(1, std::memory_order_relaxed);
    // The slot's OVERLAPPED is its first member.
    reinterpret_cast<slot*>(ov)->free.store(1, std::memory_order_release);
  }
};

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

unsigned arg(int argc, char** argv, const char* name, unsigned fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return static_cast<unsigned>(std::atoi(argv[i + 1]));
  return fallback;
}
const char* text_arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned pollers = arg(argc, argv, "--pollers", 1);
  const unsigned notifiers = arg(argc, argv, "--notifiers", 1);
  const unsigned producers = arg(argc, argv, "--producers", 1);
  const unsigned window = arg(argc, argv, "--window", 32);
  const unsigned seconds_x10 = arg(argc, argv, "--tenths", 10);  // run time in 0.1 s
  const std::string backend = text_arg(argc, argv, "--backend", "uring");
  if (pollers == 0 || notifiers == 0 || producers == 0 || window == 0) {
    std::fprintf(stderr, "iocm-scale-sweep: counts must be at least 1\n");
    return 2;
  }

  iocm::engine_config c = iocm::default_engine_config();
  c.pollers = pollers;
  c.min_threads = notifiers;
  c.max_threads = notifiers;
  c.backend = backend == "epoll" ? IOCM_BACKEND_EPOLL : IOCM_BACKEND_URING;
  counting_handler handler;
  std::unique_ptr<iocm::engine> e;
  try {
    e = std::make_unique<iocm::engine>(handler, c);
  } catch (const std::exception& x) {
    std::fprintf(stderr, "iocm-scale-sweep: the engine did not start: %s\n", x.what());
    return 1;
  }
  // Two descriptors a poller; the engine deals bound handles to pollers in turn.
  std::vector<int> fds;
  for (unsigned i = 0; i < 2 * pollers; ++i) {
    const int fd = ::eventfd(0, EFD_CLOEXEC);
    if (fd < 0 || e->bind(fd)) {
      std::fprintf(stderr, "iocm-scale-sweep: cannot bind an eventfd\n");
      return 1;
    }
    fds.push_back(fd);
  }

  std::vector<std::unique_ptr<slot[]>> slots;
  for (unsigned p = 0; p < producers; ++p) slots.push_back(std::make_unique<slot[]>(window));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> refused{0};
  std::vector<std::uint64_t> submitted(producers, 0);
  std::vector<std::thread> threads;
  const double cpu_before = cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (unsigned p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      slot* mine = slots[p].get();
      std::uint64_t n = 0;
      for (unsigned i = 0; !stop.load(std::memory_order_relaxed); i = i + 1 == window ? 0 : i + 1) {
        slot& s = mine[i];
        while (s.free.load(std::memory_order_acquire) == 0) {
          if (stop.load(std::memory_order_relaxed)) break;
          std::this_thread::yield();
        }
        if (stop.load(std::memory_order_relaxed)) break;
        s.free.store(0, std::memory_order_relaxed);
        const int fd = fds[(p * window + i) % fds.size()];
        if (e->nop(fd, s.o)) {
          refused.fetch_add(1, std::memory_order_relaxed);
          s.free.store(1, std::memory_order_relaxed);
          continue;
        }
        ++n;
      }
      submitted[p] = n;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100 * seconds_x10));
  stop.store(true);
  for (auto& t : threads) t.join();
  // Every submitted Nop completes: wait for each slot, then count.
  for (unsigned p = 0; p < producers; ++p)
    for (unsigned i = 0; i < window; ++i)
      while (slots[p][i].free.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_before;
  std::uint64_t total = 0;
  for (const auto n : submitted) total += n;
  const iocm_metrics m = e->metrics();
  std::uint64_t completed = 0;
  for (const auto k : m.completed) completed += k;
  // Every Nop submitted completed once, without error, and none was refused.
  const bool ok = completed == total && handler.failed.load() == 0 && refused.load() == 0;
  for (const int fd : fds) {
    (void)e->unbind(fd);
    ::close(fd);
  }
  std::printf(
      "{\"pollers\": %u, \"notifiers\": %u, \"producers\": %u, \"window\": %u, "
      "\"backend\": \"%s\", \"ops\": %llu, \"completed\": %llu, \"seconds\": %.4f, "
      "\"ops_per_s\": %.1f, \"cpu_ns_per_op\": %.1f, \"refused\": %llu, \"failed\": %llu, "
      "\"ok\": %s}\n",
      pollers, notifiers, producers, window, backend.c_str(),
      static_cast<unsigned long long>(total), static_cast<unsigned long long>(completed), seconds,
      static_cast<double>(total) / seconds, total ? cpu * 1e9 / static_cast<double>(total) : 0.0,
      static_cast<unsigned long long>(refused.load()),
      static_cast<unsigned long long>(handler.failed.load()), ok ? "true" : "false");
  return ok ? 0 : 1;
}
