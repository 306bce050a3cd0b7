// Engine benchmarks, each on both backends (io_uring, and the epoll
// fallback) beside a plain single-thread loop that does the same work:
//   nop          nops through the whole engine (host thread -> poller inbox
//                -> kernel -> completion queue -> notifier -> OnComplete)
//   file_randread  4 KiB reads at random offsets of a cached file
//   echo         64-byte round trips over loopback TCP connections, every
//                send and receive (both ends) through the engine
// and the latency from Post to OnComplete with the notifier hot and parked.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_io.h"
#include "bench_threads.h"
#include "engine_under_test.h"
#include "iocm/detail/backoff.h"
#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "iocm/mpmc_queue.h"

using namespace iocm::hosting;
using iocm_bench::affinity_guard;
using iocm_bench::pin_to;
using namespace iocm_bench;

namespace {

/// The ring of a plain single-thread loop, set up as the engine's pollers
/// prefer (SINGLE_ISSUER|DEFER_TASKRUN, else plain), on CPU 1; false (the
/// benchmark skipped) when io_uring is unavailable.
bool raw_ring(io_uring& ring, benchmark::State& state) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(256, &ring, &p) != 0 && io_uring_queue_init(256, &ring, 0) != 0) {
    state.SkipWithError("io_uring unavailable");
    return false;
  }
  pin_to(1 % static_cast<int>(std::thread::hardware_concurrency()));
  return true;
}

constexpr int ops_per_iteration = 1 << 16;
constexpr int window = 256;  // operations in flight
constexpr unsigned raw_batch = 64;

enum class engine_op { nop, file_read };

/// One host thread keeps `window` operations in flight through the engine;
/// the notifier frees each slot. Checks that every one completed once.
/// Pumped: the same through a pumped engine, whose only thread is the host
/// thread (it pumps while it waits for a slot): the single-thread ceiling.
/// The benchmark's own flag beside iocm's: the file is opted into
/// IOCM_SKIP_COMPLETION_ON_SUCCESS, so a read the kernel finishes at once
/// answers S_OK on the host thread and no OnComplete follows.
constexpr std::uint32_t skip_on_success = 1u << 31;
/// Another: every echo socket is opted into IOCM_RECEIVE_AHEAD (one
/// multishot receive per socket into the poller's buffers).
constexpr std::uint32_t receive_ahead = 1u << 30;

/// Flags: IOCM_HANDOFF measures delivery on notifiers only, as before the
/// pollers delivered inline; skip_on_success, reads finished at once.
void engine_ops_iocm(benchmark::State& state, std::uint32_t backend, engine_op op, int depth = 0,
                     bool pumped = false, std::uint32_t flags = 0) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  std::optional<engine_under_test> engine;
  std::optional<cached_file> file;
  try {
    engine.emplace(256, backend, nullptr, (flags & ~skip_on_success) | (pumped ? IOCM_PUMPED : 0));
    if (op == engine_op::file_read) {
      file.emplace();
      engine->bind(file->fd, (flags & skip_on_success) != 0 ? IOCM_SKIP_COMPLETION_ON_SUCCESS : 0);
    }
  } catch (const std::exception& ex) {
    state.SkipWithError(ex.what());
    return;
  }
  engine_under_test& e = *engine;
  const int in_flight = op == engine_op::nop ? window : depth;
  std::vector<slot> slots(static_cast<std::size_t>(in_flight));
  std::vector<char> buffers(op == engine_op::nop ? 0 : slots.size() * read_bytes);
  for (auto& s : slots) e.manager->InitializeHostOverlapped(&s.ov);
  const HANDLE target =
      op == engine_op::nop ? e.handle : reinterpret_cast<HANDLE>(static_cast<intptr_t>(file->fd));
  offsets where;
  // The poller is pinned to CPU 0, the notifier to the next CPU. A pumped
  // engine has neither: its host thread runs where a plain loop runs.
  if (pumped)
    pin_to(1 % static_cast<int>(std::thread::hardware_concurrency()));
  else if (const char* cpu = std::getenv("IOCM_BENCH_HOST_CPU"))
    pin_to(std::atoi(cpu));
  // Until the notifier frees s; a pumped engine's host thread delivers.
  auto wait_free = [&](const slot& s) {
    if (pumped) {
      while (s.busy.load(std::memory_order_acquire)) e.pump_wait();
      return;
    }
    // Spin, then yield: on a small machine the notifier may share our core.
    for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
  };
  std::uint64_t submitted = 0, at_once = 0;  // at_once: answered S_OK, no OnComplete
  const int per_iteration = op == engine_op::nop ? ops_per_iteration : reads_per_iteration;
  cpu.start();
  for (auto _ : state) {
    for (int i = 0; i < per_iteration; ++i) {
      const std::size_t k = submitted++ % slots.size();
      slot& s = slots[k];
      wait_free(s);
      s.busy.store(true, std::memory_order_relaxed);
      HRESULT hr;
      if (op == engine_op::nop) {
        hr = e.io->Nop(target, &s.ov);
      } else {
        const std::uint64_t off = where.next();
        s.ov.Offset = static_cast<DWORD>(off);
        s.ov.OffsetHigh = static_cast<DWORD>(off >> 32);
        hr = e.io->Read(target, buffers.data() + k * read_bytes, read_bytes, &s.ov);
      }
      if (hr == S_OK && (flags & skip_on_success) != 0) {
        if (s.ov.InternalHigh != read_bytes) {
          state.SkipWithError("a short read at once");
          return;
        }
        ++at_once;
        s.busy.store(false, std::memory_order_relaxed);
        continue;
      }
      if (hr != IOCM_E_IO_PENDING) {
        state.SkipWithError("operation refused");
        return;
      }
    }
  }
  cpu.stop();
  for (auto& s : slots) wait_free(s);
  if (e.runtime.completed.load() + at_once != submitted)
    state.SkipWithError("completions lost or duplicated");
  else if (op == engine_op::file_read &&
           e.runtime.bytes.load() + at_once * read_bytes != submitted * read_bytes)
    state.SkipWithError("short or failed reads");
  cpu.report(state, static_cast<std::int64_t>(submitted));
}

/// The same reads in a plain single-thread liburing loop, range(0) in
/// flight: submit what completed, wait for one, reap all that are done.
void file_randread_liburing_raw(benchmark::State& state, int depth) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  cached_file file;
  io_uring ring;
  if (!raw_ring(ring, state)) return;
  const auto read_window = static_cast<unsigned>(depth);
  std::vector<char> buffers(read_window * read_bytes);
  offsets where;
  std::vector<unsigned> free_slots;
  for (unsigned i = 0; i < read_window; ++i) free_slots.push_back(i);
  std::uint64_t submitted = 0, completed = 0, bytes = 0;
  auto refill = [&] {
    for (unsigned k : free_slots) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_read(sqe, file.fd, buffers.data() + k * read_bytes, read_bytes, where.next());
      sqe->user_data = k;
      ++submitted;
    }
    free_slots.clear();
  };
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = completed + reads_per_iteration;
    while (completed < target) {
      refill();
      io_uring_submit_and_wait(&ring, 1);
      io_uring_cqe* cqe;
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        if (cqe->res > 0) bytes += static_cast<std::uint64_t>(cqe->res);
        free_slots.push_back(static_cast<unsigned>(cqe->user_data));
        ++n;
      }
      io_uring_cq_advance(&ring, n);
      completed += n;
    }
  }
  cpu.stop();
  while (completed < submitted) {  // the ones still in flight
    io_uring_cqe* cqe;
    if (io_uring_wait_cqe(&ring, &cqe) != 0) break;
    if (cqe->res > 0) bytes += static_cast<std::uint64_t>(cqe->res);
    io_uring_cqe_seen(&ring, cqe);
    ++completed;
  }
  io_uring_queue_exit(&ring);
  if (completed != submitted || bytes != completed * read_bytes)
    state.SkipWithError("reads lost or short");
  cpu.report(state, static_cast<std::int64_t>(completed));
}

/// The floor without any engine: one thread calling pread, what the epoll
/// poller does for files (one at a time, no window).
void file_randread_pread(benchmark::State& state) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  cached_file file;
  pin_to(1 % static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<char> buffer(read_bytes);
  offsets where;
  std::uint64_t done = 0;
  cpu.start();
  for (auto _ : state)
    for (int i = 0; i < reads_per_iteration; ++i) {
      if (::pread(file.fd, buffer.data(), read_bytes, static_cast<off_t>(where.next())) !=
          static_cast<ssize_t>(read_bytes)) {
        state.SkipWithError("short read");
        return;
      }
      ++done;
    }
  cpu.stop();
  cpu.report(state, static_cast<std::int64_t>(done));
}

// --- echo ------------------------------------------------------------------

/// The runtime for echo: every completion drives its connection's next
/// step. Client: send 64 bytes, receive 64 back, again. Server: receive 64,
/// send them back, again. Partial transfers are finished before going on.
class echo_runtime final : public runtime_base {
 public:
  enum step : unsigned { client_send, client_recv, server_recv, server_send };
  struct conn {
    struct op : iocm::overlapped {
      conn* owner = nullptr;
      step what{};
      std::uint32_t done = 0;  // bytes so far of this 64-byte transfer
    };
    op ops[4];
    HANDLE client{}, server{};
    char client_buffer[echo_bytes]{}, server_buffer[echo_bytes]{};
  };

  void start(IHostIoCompletionManager* manager, IIocmHostIo* io,
             const std::vector<std::pair<int, int>>& pairs) {
    io_ = io;
    conns_ = std::vector<conn>(pairs.size());
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      conn& k = conns_[i];
      k.client = reinterpret_cast<HANDLE>(static_cast<intptr_t>(pairs[i].first));
      k.server = reinterpret_cast<HANDLE>(static_cast<intptr_t>(pairs[i].second));
      for (unsigned s = 0; s < 4; ++s) {
        k.ops[s].owner = &k;
        k.ops[s].what = static_cast<step>(s);
        manager->InitializeHostOverlapped(&k.ops[s].ov);
      }
      std::memset(k.client_buffer, 'e', echo_bytes);
    }
    for (conn& k : conns_) {
      issue(k.ops[server_recv]);
      issue(k.ops[client_send]);
    }
  }
  /// Clients stop after their current round trip; true once all stopped.
  void stop() { stopping_.store(true, std::memory_order_release); }
  bool all_stopped() const { return stopped_.load(std::memory_order_acquire) == conns_.size(); }
  std::uint64_t round_trips() const { return round_trips_.load(std::memory_order_acquire); }
  std::uint64_t issued() const { return issued_.load(); }
  std::uint64_t completed() const { return completed_.load(); }
  bool failed() const { return failed_.load(); }

  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    completed_.fetch_add(1, std::memory_order_relaxed);
    auto& o = *holder_of<conn::op>(ov);
    conn& k = *o.owner;
    if (error != 0 || bytes == 0) {
      // The server's last receive, aborted when the engine closes, is expected.
      if (!(o.what == server_recv && stopping_.load(std::memory_order_acquire))) failed_ = true;
      return S_OK;
    }
    o.done += bytes;
    if (o.done < echo_bytes) {  // partial: finish this transfer first
      issue(o);
      return S_OK;
    }
    o.done = 0;
    switch (o.what) {
      case client_send:
        issue(k.ops[client_recv]);
        break;
      case client_recv:
        round_trips_.fetch_add(1, std::memory_order_release);
        if (stopping_.load(std::memory_order_acquire))
          stopped_.fetch_add(1, std::memory_order_acq_rel);
        else
          issue(k.ops[client_send]);
        break;
      case server_recv:
        issue(k.ops[server_send]);
        break;
      case server_send:
        issue(k.ops[server_recv]);
        break;
    }
    return S_OK;
  }

 private:
  void issue(conn::op& o) {
    conn& k = *o.owner;
    issued_.fetch_add(1, std::memory_order_relaxed);
    const bool client = o.what == client_send || o.what == client_recv;
    const HANDLE h = client ? k.client : k.server;
    char* at = (client ? k.client_buffer : k.server_buffer) + o.done;
    const DWORD left = echo_bytes - o.done;
    const HRESULT hr = o.what == client_send || o.what == server_send
                           ? io_->Send(h, at, left, &o.ov)
                           : io_->Recv(h, at, left, &o.ov);
    if (hr != IOCM_E_IO_PENDING) {
      issued_.fetch_sub(1, std::memory_order_relaxed);
      failed_ = true;
    }
  }

  IIocmHostIo* io_ = nullptr;
  std::vector<conn> conns_;
  std::atomic<bool> stopping_{false}, failed_{false};
  std::atomic<std::size_t> stopped_{0};
  std::atomic<std::uint64_t> round_trips_{0}, issued_{0}, completed_{0};
};

/// Pumped: through a pumped engine, whose only thread is the benchmark's
/// (on CPU 1, where the plain loop runs), pumping until the round trips are
/// done: the single-thread ceiling.
void echo_iocm(benchmark::State& state, std::uint32_t backend, int width, bool pumped = false,
               std::uint32_t flags = 0) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  echo_runtime runtime;
  std::uint64_t trips = 0;
  {
    std::optional<engine_under_test> engine;
    std::optional<tcp_connections> conns;
    try {
      engine.emplace(256, backend, &runtime, (flags & ~receive_ahead) | (pumped ? IOCM_PUMPED : 0));
      conns.emplace(width);
      const DWORD modes = (flags & receive_ahead) != 0 ? IOCM_RECEIVE_AHEAD : 0;
      for (auto [c, s] : conns->pairs) {
        engine->bind(c, modes);
        engine->bind(s, modes);
      }
    } catch (const std::exception& ex) {
      state.SkipWithError(ex.what());
      return;
    }
    if (pumped) pin_to(1 % static_cast<int>(std::thread::hardware_concurrency()));
    // A pumped engine delivers on this thread, sleeping in the kernel until
    // there is something to deliver.
    auto until = [&](auto done) {
      if (!pumped) return wait_until(done);
      while (!done()) engine->pump_wait();
    };
    runtime.start(engine->manager, engine->io, conns->pairs);
    cpu.start();
    for (auto _ : state) {
      const std::uint64_t target = runtime.round_trips() + round_trips_per_iteration;
      until([&] { return runtime.round_trips() >= target || runtime.failed(); });
    }
    cpu.stop();
    runtime.stop();
    until([&] { return runtime.all_stopped() || runtime.failed(); });
    trips = runtime.round_trips();
    // Leaving this scope releases the engine: the servers' waiting
    // receives complete aborted; then the sockets close.
  }
  if (runtime.failed())
    state.SkipWithError("an echo operation failed or was refused");
  else if (runtime.completed() != runtime.issued())
    state.SkipWithError("completions lost or duplicated");
  cpu.report(state, static_cast<std::int64_t>(trips));
}

/// The same echo in a plain single-thread liburing loop: all connections'
/// sends and receives, both ends, in one ring.
void echo_liburing_raw(benchmark::State& state, int width) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  tcp_connections conns(width);
  io_uring ring;
  if (!raw_ring(ring, state)) return;
  struct raw_conn {
    char client_buffer[echo_bytes], server_buffer[echo_bytes];
    std::uint32_t done[4] = {0, 0, 0, 0};
  };
  std::vector<raw_conn> rc(conns.pairs.size());
  auto issue = [&](std::size_t i, unsigned what) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    const auto [c, s] = conns.pairs[i];
    raw_conn& k = rc[i];
    const std::uint32_t off = k.done[what], left = echo_bytes - off;
    switch (what) {
      case echo_runtime::client_send:
        io_uring_prep_send(sqe, c, k.client_buffer + off, left, MSG_NOSIGNAL);
        break;
      case echo_runtime::client_recv:
        io_uring_prep_recv(sqe, c, k.client_buffer + off, left, 0);
        break;
      case echo_runtime::server_recv:
        io_uring_prep_recv(sqe, s, k.server_buffer + off, left, 0);
        break;
      default:
        io_uring_prep_send(sqe, s, k.server_buffer + off, left, MSG_NOSIGNAL);
        break;
    }
    sqe->user_data = i * 4 + what;
  };
  for (std::size_t i = 0; i < rc.size(); ++i) {
    std::memset(rc[i].client_buffer, 'e', echo_bytes);
    issue(i, echo_runtime::server_recv);
    issue(i, echo_runtime::client_send);
  }
  std::uint64_t trips = 0;
  bool failed = false;
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = trips + round_trips_per_iteration;
    while (trips < target && !failed) {
      io_uring_submit_and_wait(&ring, 1);
      io_uring_cqe* cqe;
      unsigned head, n = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++n;
        const std::size_t i = cqe->user_data / 4;
        const auto what = static_cast<unsigned>(cqe->user_data % 4);
        if (cqe->res <= 0) {
          failed = true;
          continue;
        }
        raw_conn& k = rc[i];
        k.done[what] += static_cast<std::uint32_t>(cqe->res);
        if (k.done[what] < echo_bytes) {
          issue(i, what);
          continue;
        }
        k.done[what] = 0;
        if (what == echo_runtime::client_recv) ++trips;
        // send -> receive on the same end; receive -> send.
        static constexpr unsigned next[4] = {echo_runtime::client_recv, echo_runtime::client_send,
                                             echo_runtime::server_send, echo_runtime::server_recv};
        issue(i, next[what]);
      }
      io_uring_cq_advance(&ring, n);
    }
  }
  cpu.stop();
  io_uring_queue_exit(&ring);  // cancels what is still in flight
  if (failed) state.SkipWithError("an echo operation failed");
  cpu.report(state, static_cast<std::int64_t>(trips));
}

void engine_nop_liburing_raw(benchmark::State& state) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  io_uring ring;
  if (!raw_ring(ring, state)) return;
  std::uint64_t completed = 0, submitted = 0;
  cpu.start();
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
  cpu.stop();
  io_uring_queue_exit(&ring);
  if (completed != submitted) state.SkipWithError("completions lost");
  cpu.report(state, static_cast<std::int64_t>(completed));
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
  report_latency(state, samples);
}

/// Post throughput: one host thread (CPU 0) keeps post_window posts
/// outstanding; the notifier (its own CPU) runs OnComplete, which frees the
/// slot. The peers in post_peers.cpp do the same work on their executors.
void post_iocm(benchmark::State& state) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  engine_under_test e(256);
  std::vector<slot> slots(iocm_bench::post_window);
  for (auto& s : slots) e.manager->InitializeHostOverlapped(&s.ov);
  pin_to(0);
  std::uint64_t posted = 0;
  cpu.start();
  for (auto _ : state) {
    for (int i = 0; i < iocm_bench::posts_per_iteration; ++i) {
      slot& s = slots[posted++ % slots.size()];
      for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
      s.busy.store(true, std::memory_order_relaxed);
      if (e.io->Post(e.port, 0, 0, &s.ov) != IOCM_E_IO_PENDING) {
        state.SkipWithError("post refused");
        return;
      }
    }
  }
  cpu.stop();
  for (auto& s : slots)
    for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
  if (e.runtime.completed.load() != posted) state.SkipWithError("posts lost or duplicated");
  cpu.report(state, static_cast<std::int64_t>(posted));
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
  iocm_bench::cpu_meter cpu;
  io_uring ring;
  if (io_uring_queue_init(1024, &ring, 0) != 0) {
    state.SkipWithError("io_uring unavailable");
    return;
  }
  std::mutex ring_mutex;
  std::uint64_t reaped_total = 0;
  cpu.start();
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
  cpu.stop();
  io_uring_queue_exit(&ring);
  cpu.report(state, static_cast<std::int64_t>(reaped_total));
}

void submit_inbox(benchmark::State& state) {
  iocm_bench::cpu_meter cpu;
  std::uint64_t reaped_total = 0;
  cpu.start();
  for (auto _ : state) {
    iocm::mpmc_queue<std::uintptr_t> inbox(
        iocm::queue_options{.capacity = 4096, .producer_lanes = 0});
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
  cpu.stop();
  cpu.report(state, static_cast<std::int64_t>(reaped_total));
}

}  // namespace

BENCHMARK_CAPTURE(engine_ops_iocm, nop_uring, IOCM_BACKEND_URING, engine_op::nop)
    ->Name("engine/nop/iocm")
    ->UseRealTime()
    ->MinTime(0.5);
// epoll has no kernel no-op: its nop completes on the poller, so this is the
// engine's own hand-offs (inbox, poller, queue, notifier) without a syscall.
BENCHMARK_CAPTURE(engine_ops_iocm, nop_epoll, IOCM_BACKEND_EPOLL, engine_op::nop)
    ->Name("engine/nop/iocm_epoll")
    ->UseRealTime()
    ->MinTime(0.5);
BENCHMARK_CAPTURE(engine_ops_iocm, nop_handoff, IOCM_BACKEND_URING, engine_op::nop, 0, false,
                  IOCM_HANDOFF)
    ->Name("engine/nop/iocm_handoff")
    ->UseRealTime()
    ->MinTime(0.5);
BENCHMARK(engine_nop_liburing_raw)->Name("engine/nop/liburing_raw")->UseRealTime()->MinTime(0.5);
BENCHMARK(post_iocm)->Name("engine/post/iocm")->UseRealTime()->MinTime(0.5);
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

// file_randread_qd<N> and echo_c<N>, for each depth and width.
const bool registered_io = [] {
  auto add = [](const std::string& name, auto&&... fn_and_args) {
    benchmark::RegisterBenchmark(name.c_str(), fn_and_args...)->UseRealTime()->MinTime(0.5);
  };
  for (const int qd : file_depths) {
    const std::string scenario = "engine/file_randread_qd" + std::to_string(qd) + "/";
    add(scenario + "iocm", engine_ops_iocm, IOCM_BACKEND_URING, engine_op::file_read, qd, false,
        0u);
    add(scenario + "iocm_epoll", engine_ops_iocm, IOCM_BACKEND_EPOLL, engine_op::file_read, qd,
        false, 0u);
    add(scenario + "iocm_pumped", engine_ops_iocm, IOCM_BACKEND_URING, engine_op::file_read, qd,
        true, 0u);
    add(scenario + "iocm_handoff", engine_ops_iocm, IOCM_BACKEND_URING, engine_op::file_read, qd,
        false, std::uint32_t{IOCM_HANDOFF});
    if (qd == 1)
      add(scenario + "iocm_sync", engine_ops_iocm, IOCM_BACKEND_URING, engine_op::file_read, qd,
          false, skip_on_success);
    add(scenario + "liburing_raw", file_randread_liburing_raw, qd);
    if (qd == 1) add(scenario + "pread", file_randread_pread);
  }
  for (const int width : echo_widths) {
    const std::string scenario = "engine/echo_c" + std::to_string(width) + "/";
    add(scenario + "iocm", echo_iocm, IOCM_BACKEND_URING, width, false, 0u);
    add(scenario + "iocm_epoll", echo_iocm, IOCM_BACKEND_EPOLL, width, false, 0u);
    add(scenario + "iocm_pumped", echo_iocm, IOCM_BACKEND_URING, width, true, 0u);
    add(scenario + "iocm_handoff", echo_iocm, IOCM_BACKEND_URING, width, false,
        std::uint32_t{IOCM_HANDOFF});
    add(scenario + "iocm_ahead", echo_iocm, IOCM_BACKEND_URING, width, false, receive_ahead);
    add(scenario + "iocm_ahead_fixed", echo_iocm, IOCM_BACKEND_URING, width, false,
        receive_ahead | IOCM_FIXED_FILES);
    add(scenario + "iocm_ahead_all", echo_iocm, IOCM_BACKEND_URING, width, false,
        receive_ahead | IOCM_INLINE_ALL);
    add(scenario + "liburing_raw", echo_liburing_raw, width);
  }
  return true;
}();

BENCHMARK_MAIN();
