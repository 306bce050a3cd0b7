// file_randread_qd<N>/dotnet_style and echo_c<N>/dotnet_style: the same work
// as the engine's, on the shape .NET's runtime has on Linux.
//
//   echo   One engine thread (CPU 0) waits in epoll_wait on every socket,
//          registered once, edge-triggered, for in and out (as .NET's
//          SocketAsyncEngine does). It hands each event through a moodycamel
//          BlockingConcurrentQueue to one worker (CPU 1), which stands for
//          the thread pool. The worker runs the socket's waiting operation
//          (the non-blocking recv or send) and its continuation inline. Like
//          .NET's SocketAsyncContext, an operation is first tried at once
//          and waits for readiness only when the kernel says EAGAIN.
//   file   .NET reads a regular file with a blocking pread on a thread-pool
//          thread (files have no readiness). Each read is a work item in a
//          BlockingConcurrentQueue; one worker per CPU takes it, runs pread
//          and then the continuation, which queues the next read.
// One worker for echo keeps the thread count equal to the engine's (one
// poller, one notifier); it also means a socket's state is only ever touched
// by that worker, so no event can slip between an EAGAIN and the wait.
#include <benchmark/benchmark.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <concurrentqueue/blockingconcurrentqueue.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench_io.h"
#include "bench_threads.h"

namespace {

using iocm_bench::affinity_guard;
using iocm_bench::pin_to;
using namespace iocm_bench;

int cpu(int n) { return n % static_cast<int>(std::thread::hardware_concurrency()); }

// --- echo --------------------------------------------------------------------

struct socket_event {
  std::uint32_t socket;  // index into dotnet_echo::sockets; stop_socket stops the worker
  std::uint32_t events;
};
constexpr std::uint32_t stop_socket = ~0u;

/// One socket's context: at most one receive and one send wait at a time.
struct socket_context {
  int fd = -1;
  bool client = false;
  char buffer[echo_bytes]{};
  std::uint32_t recv_done = 0, send_done = 0;  // bytes of the current transfer
  bool recv_waiting = false, send_waiting = false;
};

class dotnet_echo {
 public:
  explicit dotnet_echo(const tcp_connections& conns) : sockets_(2 * conns.pairs.size()) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epoll_ < 0 || wake_ < 0) throw std::runtime_error("epoll_create1/eventfd");
    epoll_event stop{};
    stop.events = EPOLLIN;
    stop.data.u32 = stop_socket;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &stop);
    for (std::size_t i = 0; i < conns.pairs.size(); ++i) {
      add(2 * i, conns.pairs[i].first, true);
      add(2 * i + 1, conns.pairs[i].second, false);
    }
  }
  ~dotnet_echo() {
    for (auto& s : sockets_) ::close(s.fd);
    ::close(wake_);
    ::close(epoll_);
  }

  void run(benchmark::State& state) {
    iocm_bench::cpu_meter cpu;
    std::thread engine([this] { engine_main(); });
    std::thread worker([this] { worker_main(); });
    cpu.start();
    for (auto _ : state) {
      const std::uint64_t target =
          trips_.load(std::memory_order_acquire) + round_trips_per_iteration;
      wait_until(
          [&] { return trips_.load(std::memory_order_acquire) >= target || failed_.load(); });
    }
    cpu.stop();
    stopping_.store(true, std::memory_order_release);
    wait_until([&] { return stopped_.load() == sockets_.size() / 2 || failed_.load(); });
    const std::uint64_t one = 1;
    if (::write(wake_, &one, sizeof one) != sizeof one) failed_ = true;
    engine.join();
    worker.join();
    if (failed_.load()) state.SkipWithError("an echo operation failed");
    cpu.report(state, static_cast<std::int64_t>(trips_.load()));
  }

 private:
  void add(std::size_t i, int fd, bool client) {
    socket_context& s = sockets_[i];
    s.fd = ::dup(fd);
    s.client = client;
    if (client) std::memset(s.buffer, 'e', echo_bytes);
    const int flags = ::fcntl(s.fd, F_GETFL);
    ::fcntl(s.fd, F_SETFL, flags | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, s.fd, &ev) != 0) throw std::runtime_error("epoll_ctl");
  }

  /// SocketAsyncEngine: events into the queue, nothing else.
  void engine_main() {
    pin_to(cpu(0));
    epoll_event events[1024];
    socket_event batch[1024];
    for (;;) {
      const int n = ::epoll_wait(epoll_, events, 1024, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        failed_ = true;
        break;
      }
      bool stop = false;
      std::size_t k = 0;
      for (int i = 0; i < n; ++i) {
        if (events[i].data.u32 == stop_socket)
          stop = true;
        else
          batch[k++] = {events[i].data.u32, events[i].events};
      }
      if (k != 0) queue_.enqueue_bulk(batch, k);
      if (stop) break;
    }
    queue_.enqueue(socket_event{stop_socket, 0});
  }

  /// The thread pool's worker: each event runs the socket's waiting
  /// operations, whose continuations start the next ones.
  void worker_main() {
    pin_to(cpu(1));
    // Every connection starts: the server receives, the client sends.
    for (auto& s : sockets_) s.client ? send(s) : receive(s);
    socket_event batch[64];
    for (;;) {
      const std::size_t n = queue_.wait_dequeue_bulk(batch, 64);
      for (std::size_t i = 0; i < n; ++i) {
        if (batch[i].socket == stop_socket) return;
        socket_context& s = sockets_[batch[i].socket];
        if ((batch[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) && s.recv_waiting) {
          s.recv_waiting = false;
          receive(s);
        }
        if ((batch[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && s.send_waiting) {
          s.send_waiting = false;
          send(s);
        }
      }
    }
  }

  /// One 64-byte transfer, as .NET's SocketAsyncContext runs it: tried at
  /// once, and on EAGAIN left waiting for the socket's next readiness event.
  /// `call` makes the syscall for the bytes still to go; true when the
  /// transfer is whole.
  template <class Call>
  bool transfer(std::uint32_t& done, bool& waiting, Call call) {
    for (;;) {
      const ssize_t r = call(done);
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        waiting = true;
        return false;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        failed_ = true;
        return false;
      }
      done += static_cast<std::uint32_t>(r);
      if (done < echo_bytes) continue;
      done = 0;
      return true;
    }
  }
  /// ReceiveAsync and SendAsync.
  void receive(socket_context& s) {
    if (transfer(s.recv_done, s.recv_waiting,
                 [&](std::uint32_t at) { return ::recv(s.fd, s.buffer + at, echo_bytes - at, 0); }))
      received(s);
  }
  void send(socket_context& s) {
    if (transfer(s.send_done, s.send_waiting, [&](std::uint32_t at) {
          return ::send(s.fd, s.buffer + at, echo_bytes - at, MSG_NOSIGNAL);
        }))
      sent(s);
  }
  // The continuations.
  void received(socket_context& s) {
    if (!s.client) {
      send(s);  // the server echoes what it got
      return;
    }
    trips_.fetch_add(1, std::memory_order_release);
    if (stopping_.load(std::memory_order_acquire))
      stopped_.fetch_add(1, std::memory_order_relaxed);
    else
      send(s);
  }
  void sent(socket_context& s) { receive(s); }

  std::vector<socket_context> sockets_;
  int epoll_ = -1, wake_ = -1;
  moodycamel::BlockingConcurrentQueue<socket_event> queue_;
  std::atomic<std::uint64_t> trips_{0};
  std::atomic<std::size_t> stopped_{0};
  std::atomic<bool> stopping_{false}, failed_{false};
};

void echo_dotnet_style(benchmark::State& state, int width) {
  affinity_guard keep;
  try {
    tcp_connections conns(width);
    dotnet_echo echo(conns);
    echo.run(state);
  } catch (const std::exception& ex) {
    state.SkipWithError(ex.what());
  }
}

// --- file reads --------------------------------------------------------------

/// depth reads in flight; each is a thread-pool work item (a slot index).
void file_randread_dotnet_style(benchmark::State& state, int depth) {
  iocm_bench::cpu_meter cpu_time;
  affinity_guard keep;
  cached_file file;
  const auto window = static_cast<std::size_t>(depth);
  std::vector<char> buffers(window * read_bytes);
  std::vector<std::uint64_t> slot_offset(window);
  moodycamel::BlockingConcurrentQueue<std::uint32_t> queue;
  constexpr std::uint32_t stop_item = ~0u;
  offsets where;  // drawn by the one thread that queues a read at a time, see below
  std::atomic<std::uint64_t> completed{0}, bytes{0}, submitted{0};
  std::atomic<bool> stopping{false}, failed{false};
  // Offsets are drawn in order under a tiny spin lock: the same sequence as
  // the other implementations, whichever worker queues the next read.
  std::atomic_flag offsets_lock = ATOMIC_FLAG_INIT;
  auto queue_read = [&](std::uint32_t k) {
    while (offsets_lock.test_and_set(std::memory_order_acquire)) {
    }
    slot_offset[k] = where.next();
    offsets_lock.clear(std::memory_order_release);
    submitted.fetch_add(1, std::memory_order_relaxed);
    queue.enqueue(k);
  };
  const unsigned workers = std::thread::hardware_concurrency();
  std::vector<std::thread> pool;
  for (unsigned w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      pin_to(cpu(static_cast<int>(w)));
      for (;;) {
        std::uint32_t k;
        queue.wait_dequeue(k);
        if (k == stop_item) return;
        const ssize_t r = ::pread(file.fd, buffers.data() + std::size_t{k} * read_bytes, read_bytes,
                                  static_cast<off_t>(slot_offset[k]));
        // The continuation: the next read of this slot, then count this
        // one. In that order the main thread, once it sees completed equal
        // submitted, knows no continuation will queue another read.
        if (r > 0)
          bytes.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
        else
          failed = true;
        if (!stopping.load(std::memory_order_acquire) && !failed.load()) queue_read(k);
        completed.fetch_add(1, std::memory_order_release);
      }
    });
  for (std::uint32_t k = 0; k < window; ++k) queue_read(k);
  cpu_time.start();
  for (auto _ : state) {
    const std::uint64_t target = completed.load(std::memory_order_acquire) + reads_per_iteration;
    wait_until(
        [&] { return completed.load(std::memory_order_acquire) >= target || failed.load(); });
  }
  cpu_time.stop();
  stopping.store(true, std::memory_order_release);
  wait_until([&] {
    const std::uint64_t c = completed.load(std::memory_order_acquire);  // first: see above
    return c == submitted.load(std::memory_order_relaxed) || failed.load();
  });
  for (unsigned w = 0; w < workers; ++w) queue.enqueue(stop_item);
  for (auto& t : pool) t.join();
  if (failed.load() || bytes.load() != completed.load() * read_bytes)
    state.SkipWithError("reads failed or short");
  else if (completed.load() != submitted.load())
    state.SkipWithError("reads lost");
  cpu_time.report(state, static_cast<std::int64_t>(completed.load()));
}

const bool registered = [] {
  auto add = [](const std::string& name, auto&&... fn_and_args) {
    benchmark::RegisterBenchmark(name.c_str(), fn_and_args...)->UseRealTime()->MinTime(0.5);
  };
  for (const int qd : file_depths)
    add("engine/file_randread_qd" + std::to_string(qd) + "/dotnet_style",
        file_randread_dotnet_style, qd);
  for (const int width : echo_widths)
    add("engine/echo_c" + std::to_string(width) + "/dotnet_style", echo_dotnet_style, width);
  return true;
}();

}  // namespace
