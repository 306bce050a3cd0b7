// engine/post/<peer>: the work of engine/post/iocm (one host thread keeps
// post_window small jobs outstanding; one executor thread runs them, each
// freeing its slot) on the executors a host would otherwise use, each
// written the way its own documentation recommends:
//   asio          boost::asio::post to an io_context run by one thread
//   libuv         a mutex-guarded list plus uv_async_send (libuv's
//                 thread-safe wake-up, which coalesces), drained by the loop
//   dotnet_style  moodycamel's BlockingConcurrentQueue feeding a worker, as
//                 a .NET-style pool hands work items to its threads
// The host thread is on CPU 0, the executor on CPU 1, as with iocm (whose
// notifier the engine pins to the CPU after its poller's).
#include <benchmark/benchmark.h>
#include <uv.h>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_threads.h"
#include "iocm/detail/backoff.h"

namespace {

using iocm_bench::affinity_guard;
using iocm_bench::pin_to;
using iocm_bench::post_window;
using iocm_bench::posts_per_iteration;

struct alignas(64) job {
  std::atomic<bool> busy{false};
};

/// The executor's side of every job: free the slot, count it.
struct jobs {
  std::vector<job> slots = std::vector<job>(post_window);
  std::atomic<std::uint64_t> done{0};
  iocm_bench::cpu_meter cpu;  // the process's CPU time over the posting loop
  void run(job* j) noexcept {
    done.fetch_add(1, std::memory_order_relaxed);  // before the slot is free
    j->busy.store(false, std::memory_order_release);
  }
};

int executor_cpu() { return 1 % static_cast<int>(std::thread::hardware_concurrency()); }

/// The host thread's loop, the same for every peer: take the next slot once
/// free, post it with `post`. Returns how many were posted.
template <class Post>
std::uint64_t drive(benchmark::State& state, jobs& js, Post post) {
  pin_to(0);
  std::uint64_t posted = 0;
  js.cpu.start();
  for (auto _ : state) {
    for (int i = 0; i < posts_per_iteration; ++i) {
      job& j = js.slots[posted++ % js.slots.size()];
      for (iocm::detail::backoff b; j.busy.load(std::memory_order_acquire);) b.pause();
      j.busy.store(true, std::memory_order_relaxed);
      post(&j);
    }
  }
  js.cpu.stop();
  for (job& j : js.slots)
    for (iocm::detail::backoff b; j.busy.load(std::memory_order_acquire);) b.pause();
  return posted;
}

void finish(benchmark::State& state, jobs& js, std::uint64_t posted) {
  if (js.done.load() != posted) state.SkipWithError("jobs lost or duplicated");
  js.cpu.report(state, static_cast<std::int64_t>(posted));
}

void post_asio(benchmark::State& state) {
  affinity_guard keep;
  jobs js;
  boost::asio::io_context ctx(1);  // concurrency hint: one thread runs it
  auto work = boost::asio::make_work_guard(ctx);
  std::thread runner([&] {
    pin_to(executor_cpu());
    ctx.run();
  });
  const std::uint64_t posted =
      drive(state, js, [&](job* j) { boost::asio::post(ctx, [&js, j] { js.run(j); }); });
  work.reset();
  runner.join();
  finish(state, js, posted);
}

/// libuv: a handle may be touched only on its loop's thread, except
/// uv_async_send. So jobs go into a locked list and the async callback
/// takes the whole list.
struct uv_executor {
  uv_loop_t loop{};
  uv_async_t wake{};
  std::mutex mutex;
  std::vector<job*> queued, taken;
  jobs* js = nullptr;
  bool stop = false;  // under mutex

  static void on_wake(uv_async_t* handle) {
    auto* self = static_cast<uv_executor*>(handle->data);
    bool stopping;
    {
      std::lock_guard lock(self->mutex);
      self->taken.swap(self->queued);
      stopping = self->stop;
    }
    for (job* j : self->taken) self->js->run(j);
    self->taken.clear();
    if (stopping) uv_close(reinterpret_cast<uv_handle_t*>(&self->wake), nullptr);
  }
};

void post_libuv(benchmark::State& state) {
  affinity_guard keep;
  jobs js;
  uv_executor ex;
  ex.js = &js;
  ex.queued.reserve(post_window);
  ex.taken.reserve(post_window);
  if (uv_loop_init(&ex.loop) != 0 || uv_async_init(&ex.loop, &ex.wake, uv_executor::on_wake) != 0) {
    state.SkipWithError("libuv loop");
    return;
  }
  ex.wake.data = &ex;
  std::thread runner([&] {
    pin_to(executor_cpu());
    uv_run(&ex.loop, UV_RUN_DEFAULT);  // until the async handle closes
  });
  const std::uint64_t posted = drive(state, js, [&](job* j) {
    {
      std::lock_guard lock(ex.mutex);
      ex.queued.push_back(j);
    }
    uv_async_send(&ex.wake);
  });
  {
    std::lock_guard lock(ex.mutex);
    ex.stop = true;
  }
  uv_async_send(&ex.wake);
  runner.join();
  uv_loop_close(&ex.loop);
  finish(state, js, posted);
}

void post_dotnet_style(benchmark::State& state) {
  affinity_guard keep;
  jobs js;
  moodycamel::BlockingConcurrentQueue<job*> queue;
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    pin_to(executor_cpu());
    job* batch[32];
    while (!stop.load(std::memory_order_acquire) || queue.size_approx() != 0) {
      // Waits on the queue's semaphore, spinning a little first.
      const std::size_t n = queue.wait_dequeue_bulk_timed(batch, 32, 1000);
      for (std::size_t i = 0; i < n; ++i) js.run(batch[i]);
    }
  });
  moodycamel::ProducerToken token(queue);
  const std::uint64_t posted = drive(state, js, [&](job* j) { queue.enqueue(token, j); });
  stop.store(true, std::memory_order_release);
  worker.join();
  finish(state, js, posted);
}

}  // namespace

BENCHMARK(post_asio)->Name("engine/post/asio")->UseRealTime()->MinTime(0.5);
BENCHMARK(post_libuv)->Name("engine/post/libuv")->UseRealTime()->MinTime(0.5);
BENCHMARK(post_dotnet_style)->Name("engine/post/dotnet_style")->UseRealTime()->MinTime(0.5);
