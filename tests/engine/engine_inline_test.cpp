// Delivery where the completion lands (docs/ENGINE.md): a poller's thread
// delivers the completions it harvests itself, and what that OnComplete
// submits goes straight into the poller's ring. Each case runs on both
// backends (CTest runs the program with IOCM_BACKEND=uring and =epoll).
//   1. A callback blocked for 1 s on the poller's own thread: operations on
//      another handle of the same poller keep completing meanwhile (p99
//      under 50 ms), including one that thread had submitted to the kernel
//      before it blocked; the blocked one completes once.
//   2. A chain of reads, each submitted from the last one's OnComplete on
//      the poller's thread: every one completes once, on that thread.
//   3. Inside an OnComplete on the poller's thread, GetAvailableThreads
//      counts that thread as busy; Cancel and Close from there return.
//   4. IOCM_HANDOFF: no OnComplete runs on a poller's thread.
//   5. io_uring setups: the probe takes the plain one, COOP_TASKRUN asked
//      for is kept, DEFER_TASKRUN asked for is kept (with hand-off).
#include <doctest/doctest.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "iocm/engine.h"
#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm_test;
using namespace std::chrono_literals;

namespace {

/// True on one of the engine's poller threads (iocm-poll-N, iocm-epoll-N).
bool on_poller_thread() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  return std::strncmp(name, "iocm-poll-", 10) == 0 || std::strncmp(name, "iocm-epoll-", 11) == 0;
}

iocm_config one_poller(std::uint32_t flags = 0) {
  iocm_config c = small_config();
  c.pollers = 1;  // every handle on the same ring
  c.max_threads = 2;
  c.flags = flags;
  return c;
}

void send_byte(int fd) {
  const char x = 'x';
  REQUIRE(::send(fd, &x, 1, MSG_NOSIGNAL) == 1);
}

}  // namespace

TEST_CASE("a callback blocked 1 s on the poller's thread: its ring's other handles keep going") {
  engine_fixture f(one_poller());
  socket_pair blocked_pair, other_pair;
  REQUIRE(f.manager->Bind(f.port, as_handle(blocked_pair.a.fd)) == S_OK);
  REQUIRE(f.manager->Bind(f.port, as_handle(other_pair.a.fd)) == S_OK);

  std::mutex m;
  std::condition_variable cv;
  bool release = false, blocking = false, blocked_on_poller = false;
  std::atomic<int> other_done{0};
  test_overlapped* blocker = f.fresh(1);
  f.runtime.hook = [&](DWORD, DWORD, void* ov) {
    if (ov == &blocker->ov) {
      std::unique_lock lock(m);
      blocking = true;
      blocked_on_poller = on_poller_thread();
      cv.notify_all();
      cv.wait_for(lock, 10s, [&] { return release; });
      return;
    }
    other_done.fetch_add(1, std::memory_order_release);
  };

  // A receive the poller's thread takes to the kernel itself, before it
  // blocks: its completion (io_uring's task work) is owed to that thread.
  char early_buffer[4];
  test_overlapped* early = f.fresh(2);
  REQUIRE(f.io->Recv(as_handle(other_pair.a.fd), early_buffer, sizeof early_buffer, &early->ov) ==
          IOCM_E_IO_PENDING);
  char blocker_buffer[4];
  REQUIRE(f.io->Recv(as_handle(blocked_pair.a.fd), blocker_buffer, sizeof blocker_buffer,
                     &blocker->ov) == IOCM_E_IO_PENDING);
  std::this_thread::sleep_for(20ms);  // both are in the kernel
  send_byte(blocked_pair.b.fd);
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return blocking; }));
  }
  const auto blocked_at = std::chrono::steady_clock::now();
  // The case needs the blocking OnComplete on the poller's own thread.
  REQUIRE(blocked_on_poller);

  // Meanwhile: the early receive, then 50 more, one at a time.
  std::vector<double> latency_ms;
  char buffer[4];
  auto round_trip = [&](test_overlapped* o, bool submit) {
    const int before = other_done.load(std::memory_order_acquire);
    const auto start = std::chrono::steady_clock::now();
    if (submit)
      REQUIRE(f.io->Recv(as_handle(other_pair.a.fd), buffer, sizeof buffer, &o->ov) ==
              IOCM_E_IO_PENDING);
    send_byte(other_pair.b.fd);
    while (other_done.load(std::memory_order_acquire) == before &&
           std::chrono::steady_clock::now() - start < 5s)
      std::this_thread::sleep_for(100us);
    latency_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  };
  round_trip(early, false);
  for (int i = 0; i < 50; ++i) round_trip(f.fresh(100 + i), true);
  const bool still_blocked = std::chrono::steady_clock::now() - blocked_at < 1s;
  std::this_thread::sleep_until(blocked_at + 1s);
  {
    std::lock_guard lock(m);
    release = true;
  }
  cv.notify_all();
  REQUIRE(f.runtime.wait_for(52));
  CHECK(still_blocked);  // the round trips ran while the callback blocked

  std::sort(latency_ms.begin(), latency_ms.end());
  const double p99 = latency_ms[latency_ms.size() * 99 / 100];
  INFO("round trips while blocked: p50 " << latency_ms[latency_ms.size() / 2] << " ms, p99 " << p99
                                         << " ms, max " << latency_ms.back() << " ms");
  CHECK(other_done.load() == 51);
  CHECK(p99 < 50.0);
  f.settle();
  CHECK(f.runtime.only(&blocker->ov).bytes == 1);
  CHECK(f.runtime.only(&early->ov).bytes == 1);
  CHECK(f.runtime.count() == 52);
}

TEST_CASE("reads submitted from OnComplete on the poller's thread: each completes once, there") {
  engine_fixture f(one_poller());
  fd_guard file(temp_file());
  std::vector<char> content(64 * 1024, 'a');
  REQUIRE(::pwrite(file.fd, content.data(), content.size(), 0) ==
          static_cast<ssize_t>(content.size()));
  REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);

  constexpr int chain_length = 20000;
  std::atomic<int> issued{1}, off_poller{0}, failed{0};
  char buffer[512];
  test_overlapped* o = f.fresh();
  f.runtime.hook = [&](DWORD error, DWORD bytes, void* ov) {
    if (error != 0 || bytes != sizeof buffer) failed.fetch_add(1);
    if (!on_poller_thread()) off_poller.fetch_add(1);
    if (issued.load() == chain_length) return;
    issued.fetch_add(1);
    set_offset(*static_cast<OVERLAPPED*>(ov), (issued.load() % 128) * sizeof buffer);
    if (f.io->Read(as_handle(file.fd), buffer, sizeof buffer, static_cast<OVERLAPPED*>(ov)) !=
        IOCM_E_IO_PENDING)
      failed.fetch_add(1);
  };
  set_offset(o->ov, 0);
  REQUIRE(f.io->Read(as_handle(file.fd), buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(chain_length, 30s));
  f.settle();
  CHECK(f.runtime.count() == chain_length);
  CHECK(failed.load() == 0);
  // The reads completed on the thread that harvested them, and so submitted
  // the next one straight into its own ring. (Not every one: a thread
  // preempted inside OnComplete for over a millisecond on a loaded machine
  // looks stuck, and the monitor hands that ring's next records to the
  // notifiers; with IOCM_HANDOFF every one would be off the poller.)
  INFO(off_poller.load() << " of " << chain_length << " off the poller's thread");
  CHECK(off_poller.load() < chain_length / 2);
}

TEST_CASE("inside OnComplete on the poller's thread: counted busy; Cancel and Close return") {
  engine_fixture f(one_poller());
  socket_pair trigger, idle;
  REQUIRE(f.manager->Bind(f.port, as_handle(trigger.a.fd)) == S_OK);
  REQUIRE(f.manager->Bind(f.port, as_handle(idle.a.fd)) == S_OK);
  char b1[4], b2[4];
  test_overlapped* first = f.fresh(1);
  test_overlapped* waiting = f.fresh(2);
  REQUIRE(f.io->Recv(as_handle(idle.a.fd), b2, sizeof b2, &waiting->ov) == IOCM_E_IO_PENDING);
  DWORD max = 0, available = 99;
  REQUIRE(f.manager->GetMaxThreads(&max) == S_OK);
  std::atomic<bool> ran{false}, on_poller{false};
  HRESULT cancelled = E_FAIL, closed = E_FAIL;
  std::chrono::duration<double, std::milli> cancel_took{};
  f.runtime.hook = [&](DWORD, DWORD, void* ov) {
    if (ov != &first->ov) return;
    on_poller = on_poller_thread();
    f.manager->GetAvailableThreads(&available);
    // The poller's own ring answers: this thread drives it while it waits,
    // not the monitor a millisecond later.
    const auto start = std::chrono::steady_clock::now();
    cancelled = f.io->Cancel(as_handle(idle.a.fd), &waiting->ov);
    cancel_took = std::chrono::steady_clock::now() - start;
    closed = f.manager->CloseIoCompletionPort(f.port);
    ran = true;
  };
  REQUIRE(f.io->Recv(as_handle(trigger.a.fd), b1, sizeof b1, &first->ov) == IOCM_E_IO_PENDING);
  std::this_thread::sleep_for(20ms);
  send_byte(trigger.b.fd);
  REQUIRE(f.runtime.wait_for(2));
  for (int i = 0; i < 1000 && !ran; ++i) std::this_thread::sleep_for(1ms);
  REQUIRE(ran);
  CHECK(on_poller);
  CHECK(available == max - 1);
  CHECK(cancelled == S_OK);
  INFO("Cancel took " << cancel_took.count() << " ms");
  CHECK(closed == S_OK);
  f.settle();
  CHECK(f.runtime.only(&waiting->ov).error == ERROR_OPERATION_ABORTED);
  CHECK(f.runtime.only(&first->ov).bytes == 1);
}

TEST_CASE("IOCM_HANDOFF: no OnComplete runs on a poller's thread") {
  engine_fixture f(one_poller(IOCM_HANDOFF));
  socket_pair p;
  REQUIRE(f.manager->Bind(f.port, as_handle(p.a.fd)) == S_OK);
  std::atomic<int> on_poller{0};
  f.runtime.hook = [&](DWORD, DWORD, void*) { on_poller += on_poller_thread() ? 1 : 0; };
  char buffer[4];
  for (int i = 0; i < 200; ++i) {
    test_overlapped* o = f.fresh(i);
    REQUIRE(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
    send_byte(p.b.fd);
    REQUIRE(f.runtime.wait_for(static_cast<std::size_t>(i) + 1));
  }
  f.settle();
  CHECK(on_poller.load() == 0);
  CHECK(f.runtime.count() == 200);
}

TEST_CASE(
    "IOCM_INLINE_ALL: bursts are delivered on the poller's thread; without it, by notifiers") {
  for (const std::uint32_t flags : {0u, std::uint32_t{IOCM_INLINE_ALL}}) {
    CAPTURE(flags);
    engine_fixture f(one_poller(flags));
    socket_pair p;
    REQUIRE(f.manager->Bind(f.port, as_handle(p.a.fd)) == S_OK);
    std::atomic<int> on_poller{0}, elsewhere{0};
    f.runtime.hook = [&](DWORD, DWORD, void*) {
      (on_poller_thread() ? on_poller : elsewhere) += 1;
    };
    // Bursts of 16 nops: harvests of several records at once. Counted
    // from the 11th, well after the notifier's first spin (a spinning
    // notifier may take records first) has ended in a park.
    for (int burst = 0; burst < 40; ++burst) {
      if (burst == 10) {
        std::this_thread::sleep_for(50ms);
        on_poller = 0;
        elsewhere = 0;
      }
      for (int i = 0; i < 16; ++i)
        REQUIRE(f.io->Nop(as_handle(p.a.fd), &f.fresh()->ov) == IOCM_E_IO_PENDING);
      REQUIRE(f.runtime.wait_for(static_cast<std::size_t>(burst + 1) * 16));
    }
    f.settle();
    CHECK(f.runtime.count() == 640);
    if (flags == 0) {
      CHECK(elsewhere.load() > 0);  // harvests above 3 records go to the notifiers
    } else {
      // The notifiers sleep: nothing is handed to them, unless the ring
      // monitor found a callback stalled (a loaded machine can pause one).
      CHECK(elsewhere.load() <= 48);
      CHECK(on_poller.load() + elsewhere.load() == 480);
    }
  }
  // Never delivering on a poller and delivering everything there: refused.
  iocm_config both = one_poller(IOCM_HANDOFF | IOCM_INLINE_ALL);
  IHostIoCompletionManager* m = nullptr;
  CHECK(iocm_create_host_io_completion_manager(&both, &m) == E_INVALIDARG);
  CHECK(m == nullptr);
}

TEST_CASE("io_uring setups: the probe takes plain; COOP_TASKRUN and DEFER_TASKRUN are kept") {
  struct ignore final : iocm::completion_handler {
    void on_complete(std::uint32_t, std::uint32_t, OVERLAPPED*) noexcept override {}
  } handler;
  const std::pair<std::uint32_t, std::uint32_t> asked_used[] = {
      {IOCM_RING_PROBE, IOCM_RING_PLAIN},
      {IOCM_RING_PLAIN, IOCM_RING_PLAIN},
      {IOCM_RING_COOP_TASKRUN, IOCM_RING_COOP_TASKRUN},
      {IOCM_RING_DEFER_TASKRUN, IOCM_RING_DEFER_TASKRUN}};
  for (const auto& [asked, used] : asked_used) {
    CAPTURE(asked);
    iocm_config c = one_poller();
    c.ring_setup = asked;
    iocm::engine e(handler, c);
    if (e.stats().backend != IOCM_BACKEND_URING) return;  // the epoll run: no rings
    CHECK(e.stats().ring_setup == used);
  }
}
