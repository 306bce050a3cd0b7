// Adversarial cases, each run on both backends (CTest runs the program once
// with IOCM_BACKEND=uring and once with epoll). Every case keeps a ledger of
// what was accepted and checks each accepted operation completed exactly
// once, and nothing refused completed at all.
//   1. OnComplete frozen for 2 s while 4 threads flood: memory stays
//      bounded (backpressure refuses what does not fit), then everything
//      accepted completes exactly once.
//   2. Cancel right after submit, 10,000 times: one completion each.
//   3. A descriptor with a read pending is unbound and closed, and its
//      number reused: the old read aborts, the new socket sees only its own.
//   4. Close under load from two threads at once, and from inside OnComplete.
//   5. A signal storm at every thread of the process during stress.
//   6. A peer that sends one byte at a time, and one that closes mid-read.
//   7. API abuse: null OVERLAPPED, double submit, double bind, bind after
//      close, double close, lengths of 2^31 and more.
#include <doctest/doctest.h>

#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"
#include "support/op_ledger.h"

using namespace iocm_test;
using namespace std::chrono_literals;

namespace {

/// Resident memory of the process, in KiB.
long resident_kib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

constexpr HRESULT no_resources = HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES);

}  // namespace

TEST_CASE("OnComplete frozen for 2 s under a 4-thread flood: bounded, then all exactly once") {
  iocm_config c = small_config();
  c.queue_capacity = 256;  // small, so the flood meets backpressure soon
  c.inbox_capacity = 256;
  engine_fixture f(c);
  socket_pair s;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  constexpr int threads = 4, per_thread = 20000;
  std::vector<test_overlapped> ovs(threads * per_thread);
  for (std::size_t i = 0; i < ovs.size(); ++i) {
    ovs[i].tag = i;
    REQUIRE(f.manager->InitializeHostOverlapped(&ovs[i].ov) == S_OK);
  }
  op_ledger book(ovs.size());
  std::atomic<bool> frozen{true};
  f.runtime.hook = [&](DWORD, DWORD, void* ov) {
    while (frozen.load()) std::this_thread::sleep_for(1ms);
    book.completed(holder_of<test_overlapped>(ov)->tag);
  };
  const long before = resident_kib();
  std::atomic<int> refused{0}, other{0};
  // A refusal comes only after the engine waited room_wait_limit (a second)
  // for room: the shortest refused call, in milliseconds.
  std::atomic<long> shortest_refusal_ms{LONG_MAX};
  std::latch start(threads);
  std::vector<std::thread> flood;
  for (int t = 0; t < threads; ++t)
    flood.emplace_back([&, t] {
      start.arrive_and_wait();
      // Until the engine has refused this thread a few times: each refusal
      // comes only after the engine waited a while for room.
      for (int i = 0, mine = 0; i < per_thread && mine < 4; ++i) {
        test_overlapped& o = ovs[static_cast<std::size_t>(t * per_thread + i)];
        const auto began = std::chrono::steady_clock::now();
        const HRESULT hr =
            i % 2 == 0 ? f.io->Post(f.port, 0, 7, &o.ov) : f.io->Nop(as_handle(s.a.fd), &o.ov);
        const long took_ms =
            static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now() - began)
                                  .count());
        if (hr == IOCM_E_IO_PENDING) {
          book.accepted(o.tag);
        } else if (hr == no_resources) {
          refused.fetch_add(1);
          for (long m = shortest_refusal_ms.load(); took_ms < m;)
            if (shortest_refusal_ms.compare_exchange_weak(m, took_ms)) break;
          ++mine;
        } else {
          other.fetch_add(1);
        }
      }
    });
  for (auto& t : flood) t.join();
  std::this_thread::sleep_for(2s);  // still frozen: nothing may pile up meanwhile
  const long during = resident_kib();
  const std::uint64_t accepted = book.count().accepted;
  MESSAGE("accepted " << accepted << ", refused " << refused.load() << ", resident memory +"
                      << during - before << " KiB");
  CHECK(other.load() == 0);
  CHECK(refused.load() > 0);                  // the queue is bounded: backpressure answered
  CHECK(shortest_refusal_ms.load() >= 1000);  // and only after waiting a second for room
  CHECK(during - before < 16 * 1024);         // and no memory grew to hold the excess
  frozen.store(false);
  REQUIRE(f.runtime.wait_for(accepted, 30s));
  std::this_thread::sleep_for(50ms);
  CHECK(f.runtime.count() == accepted);
  CHECK(book.report(ledger_name("adversarial: frozen OnComplete under a flood").c_str()));
  f.manager.reset();
}

TEST_CASE("cancel right after submit, 10,000 times: exactly one completion each") {
  engine_fixture f;
  socket_pair s;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  constexpr int rounds = 10000, window = 64;
  std::vector<test_overlapped> ovs(window);
  op_ledger book(window);  // an id per OVERLAPPED, reused: the counts add up
  std::atomic<int> aborted{0}, other_error{0};
  f.runtime.hook = [&](DWORD error, DWORD, void* ov) {
    (error == ERROR_OPERATION_ABORTED ? aborted : other_error).fetch_add(1);
    book.completed(holder_of<test_overlapped>(ov)->tag);
  };
  for (int i = 0; i < window; ++i)
    ovs[static_cast<std::size_t>(i)].tag = static_cast<std::uint64_t>(i);
  char buffer[window][16];
  int not_found = 0;
  for (int i = 0; i < rounds; ++i) {
    const int k = i % window;
    test_overlapped& o = ovs[static_cast<std::size_t>(k)];
    // Reuse only once the previous submission of this OVERLAPPED completed.
    const auto id = static_cast<std::size_t>(k);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (book.completed_count(id) != book.accepted_count(id) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    REQUIRE(book.completed_count(id) == book.accepted_count(id));
    REQUIRE(f.manager->InitializeHostOverlapped(&o.ov) == S_OK);
    REQUIRE(book.answered(id, f.io->Recv(as_handle(s.a.fd), buffer[k], sizeof buffer[k], &o.ov) ==
                                  IOCM_E_IO_PENDING));
    const HRESULT hr = f.io->Cancel(as_handle(s.a.fd), &o.ov);
    if (hr == HRESULT_FROM_WIN32(ERROR_NOT_FOUND))
      ++not_found;  // completed before the cancel came: still exactly one completion
    else
      REQUIRE(hr == S_OK);
  }
  REQUIRE(f.runtime.wait_for(rounds, 30s));
  std::this_thread::sleep_for(50ms);
  CHECK(f.runtime.count() == static_cast<std::size_t>(rounds));
  CHECK(book.report(ledger_name("adversarial: cancel right after submit").c_str()));
  CHECK(book.count().accepted == static_cast<std::uint64_t>(rounds));
  // No data was ever sent, so every receive was cancelled.
  CHECK(aborted.load() == rounds);
  CHECK(other_error.load() == 0);
  MESSAGE("Cancel found the operation already done " << not_found << " times");
}

TEST_CASE("a descriptor unbound and closed with a read pending, its number reused") {
  engine_fixture f;
  socket_pair old_pair;
  const int number = old_pair.a.fd;
  REQUIRE(f.manager->Bind(f.port, as_handle(number)) == S_OK);
  test_overlapped* stale = f.fresh(1);
  char stale_buffer[32];
  REQUIRE(f.io->Recv(as_handle(number), stale_buffer, sizeof stale_buffer, &stale->ov) ==
          IOCM_E_IO_PENDING);
  REQUIRE(f.io->Unbind(as_handle(number)) == S_OK);
  REQUIRE(f.runtime.wait_for(1));
  CHECK(f.runtime.only(&stale->ov).error == ERROR_OPERATION_ABORTED);
  // Close it, and give the same number to a new socket.
  socket_pair fresh_pair;
  REQUIRE(::dup3(fresh_pair.a.fd, number, O_CLOEXEC) == number);
  REQUIRE(f.manager->Bind(f.port, as_handle(number)) == S_OK);
  test_overlapped* now = f.fresh(2);
  char buffer[32] = {};
  REQUIRE(f.io->Recv(as_handle(number), buffer, sizeof buffer, &now->ov) == IOCM_E_IO_PENDING);
  // The old peer writes (its socket is gone now, so this fails with EPIPE):
  // nothing may reach the new socket's receive.
  (void)::send(old_pair.b.fd, "stale", 5, MSG_NOSIGNAL);
  REQUIRE(::write(fresh_pair.b.fd, "fresh", 5) == 5);
  REQUIRE(f.runtime.wait_for(2));
  const completion_seen got = f.runtime.only(&now->ov);
  CHECK(got.error == ERROR_SUCCESS);
  CHECK(got.bytes == 5);
  CHECK(std::string(buffer, 5) == "fresh");
  CHECK(f.runtime.only(&stale->ov).error == ERROR_OPERATION_ABORTED);  // still just one
  REQUIRE(f.io->Unbind(as_handle(number)) == S_OK);
}

TEST_CASE("close under load from two threads at once, and from inside OnComplete") {
  for (int trial = 0; trial < 4; ++trial) {
    engine_fixture f;
    socket_pair s;
    REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
    constexpr int producers = 2, per_producer = 2000;
    std::vector<test_overlapped> ovs(producers * per_producer);
    op_ledger book(ovs.size());
    for (std::size_t i = 0; i < ovs.size(); ++i) {
      ovs[i].tag = i;
      REQUIRE(f.manager->InitializeHostOverlapped(&ovs[i].ov) == S_OK);
    }
    std::atomic<bool> closed{false};
    std::atomic<int> after_close{0}, inside_closes{0};
    const bool from_inside = trial % 2 == 1;
    HANDLE port = f.port;
    f.runtime.hook = [&](DWORD, DWORD, void* ov) {
      if (closed.load()) after_close.fetch_add(1);
      const auto tag = holder_of<test_overlapped>(ov)->tag;
      book.completed(tag);
      // One OnComplete closes the port itself, racing the two outside.
      if (from_inside && tag == 100 && f.manager->CloseIoCompletionPort(port) == S_OK)
        inside_closes.fetch_add(1);
    };
    std::latch start(producers + 2);
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p)
      threads.emplace_back([&, p] {
        start.arrive_and_wait();
        for (int i = 0; i < per_producer; ++i) {
          test_overlapped& o = ovs[static_cast<std::size_t>(p * per_producer + i)];
          const HRESULT hr =
              i % 2 == 0 ? f.io->Post(port, 0, 1, &o.ov) : f.io->Nop(as_handle(s.a.fd), &o.ov);
          if (hr == IOCM_E_IO_PENDING) book.accepted(o.tag);
        }
      });
    std::atomic<int> ok_closes{0}, invalid_closes{0};
    for (int c = 0; c < 2; ++c)
      threads.emplace_back([&] {
        start.arrive_and_wait();
        std::this_thread::sleep_for(200us);
        const HRESULT hr = f.manager->CloseIoCompletionPort(port);
        (hr == S_OK ? ok_closes : invalid_closes).fetch_add(1);
        if (hr == S_OK) closed.store(true);
      });
    for (auto& t : threads) t.join();
    f.settle();  // nothing more can arrive: the checks below are final
    // Exactly one Close succeeded, wherever it ran; the others were told the
    // port is gone.
    CHECK(ok_closes.load() + inside_closes.load() == 1);
    CHECK(invalid_closes.load() == 2 - ok_closes.load());
    CHECK(after_close.load() == 0);
    CHECK(book.report(ledger_name(from_inside ? "adversarial: Close from outside and inside"
                                              : "adversarial: Close from two threads")
                          .c_str()));
  }
}

namespace {

std::atomic<long> signals_taken{0};
void count_signal(int) { signals_taken.fetch_add(1, std::memory_order_relaxed); }

/// Sends sig to every thread of this process once.
int signal_every_thread(int sig) {
  int sent = 0;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const long tid = std::strtol(e->d_name, nullptr, 10);
    if (::syscall(SYS_tgkill, ::getpid(), tid, sig) == 0) ++sent;
  }
  ::closedir(dir);
  return sent;
}

}  // namespace

TEST_CASE("a signal storm at every thread during stress: nothing lost, nothing twice") {
  struct sigaction sa {
  }, old{};
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls see EINTR
  REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
  {
    engine_fixture f;
    socket_pair s;
    REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
    REQUIRE(f.manager->Bind(f.port, as_handle(s.b.fd)) == S_OK);
    // Stress: posts, nops, and a stream of 1-KiB sends and receives.
    // Enough work that it outlasts more than 100 signals on a fast engine.
    constexpr int posts = 60000, chunks = 400, chunk = 1024;
    std::vector<test_overlapped> ovs(posts + 2 * chunks);
    op_ledger book(ovs.size());
    for (std::size_t i = 0; i < ovs.size(); ++i) {
      ovs[i].tag = i;
      REQUIRE(f.manager->InitializeHostOverlapped(&ovs[i].ov) == S_OK);
    }
    std::vector<char> out(chunks * chunk), in(chunks * chunk, 0);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>('a' + i % 26);
    std::atomic<std::size_t> received{0};
    std::atomic<int> bad{0};
    // Receives are chained: each completion of the stream asks for the rest.
    std::atomic<std::size_t> next_recv{static_cast<std::size_t>(posts + chunks)};
    f.runtime.hook = [&](DWORD error, DWORD bytes, void* ov) {
      const auto tag = holder_of<test_overlapped>(ov)->tag;
      book.completed(tag);
      if (tag < static_cast<std::uint64_t>(posts + chunks)) {
        if (error != 0) bad.fetch_add(1);
        return;
      }
      if (error != 0 || bytes == 0) {
        bad.fetch_add(1);
        return;
      }
      const std::size_t got = received.fetch_add(bytes) + bytes;
      if (got >= in.size()) return;
      const std::size_t k = next_recv.fetch_add(1);
      if (k >= ovs.size()) {
        bad.fetch_add(1);
        return;
      }
      if (f.io->Recv(as_handle(s.b.fd), in.data() + got, static_cast<DWORD>(in.size() - got),
                     &ovs[k].ov) == IOCM_E_IO_PENDING)
        book.accepted(k);
      else
        bad.fetch_add(1);
    };
    std::atomic<bool> storming{true};
    std::thread storm([&] {
      while (storming.load()) {
        signal_every_thread(SIGUSR1);
        // Often: the stress below lasts about a second, and more than 100
        // signals must land in it.
        std::this_thread::sleep_for(20us);
      }
    });
    {
      const std::size_t k = next_recv.fetch_add(1);
      REQUIRE(f.io->Recv(as_handle(s.b.fd), in.data(), static_cast<DWORD>(in.size()), &ovs[k].ov) ==
              IOCM_E_IO_PENDING);
      book.accepted(k);
    }
    std::thread sender([&] {
      // One send at a time, in order, so the stream arrives in order.
      for (int c = 0; c < chunks; ++c) {
        test_overlapped& o = ovs[static_cast<std::size_t>(posts + c)];
        if (f.io->Send(as_handle(s.a.fd), out.data() + c * chunk, chunk, &o.ov) !=
            IOCM_E_IO_PENDING) {
          bad.fetch_add(1);
          return;
        }
        book.accepted(o.tag);
        while (book.completed_count(o.tag) == 0) std::this_thread::yield();
      }
    });
    for (int i = 0; i < posts; ++i) {
      test_overlapped& o = ovs[static_cast<std::size_t>(i)];
      HRESULT hr;
      while ((hr = i % 2 == 0 ? f.io->Post(f.port, 0, 0, &o.ov)
                              : f.io->Nop(as_handle(s.a.fd), &o.ov)) == no_resources)
        std::this_thread::yield();
      REQUIRE(hr == IOCM_E_IO_PENDING);
      book.accepted(o.tag);
    }
    sender.join();
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (received.load() < in.size() && bad.load() == 0 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
    storming.store(false);
    storm.join();
    const std::uint64_t accepted = book.count().accepted;
    REQUIRE(f.runtime.wait_for(accepted, 30s));
    f.settle();  // nothing more can arrive: the ledger below is final
    MESSAGE("signals taken: " << signals_taken.load());
    CHECK(signals_taken.load() > 100);
    CHECK(bad.load() == 0);
    CHECK(received.load() == in.size());
    CHECK(in == out);
    CHECK(book.report(ledger_name("adversarial: signal storm").c_str()));
  }
  ::sigaction(SIGUSR1, &old, nullptr);
}

TEST_CASE("a peer that sends one byte at a time, and one that closes mid-read") {
  engine_fixture f;
  socket_pair s;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  const std::string message = "one byte at a time, no more";
  std::string got;
  char buffer[64];
  std::thread trickle([&] {
    for (char ch : message) {
      REQUIRE(::write(s.b.fd, &ch, 1) == 1);
      std::this_thread::sleep_for(1ms);
    }
  });
  for (std::size_t n = 0; got.size() < message.size(); ++n) {
    test_overlapped* o = f.fresh(n);
    REQUIRE(f.io->Recv(as_handle(s.a.fd), buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(n + 1));
    const completion_seen c = f.runtime.only(&o->ov);
    REQUIRE(c.error == ERROR_SUCCESS);
    REQUIRE(c.bytes >= 1);
    got.append(buffer, c.bytes);
  }
  trickle.join();
  CHECK(got == message);

  // Ten bytes, then the peer closes: the receive gets the ten, the next one
  // an orderly close (success, 0 bytes), and so does any after it.
  const std::size_t before = f.runtime.count();
  test_overlapped* first = f.fresh(100);
  REQUIRE(f.io->Recv(as_handle(s.a.fd), buffer, sizeof buffer, &first->ov) == IOCM_E_IO_PENDING);
  REQUIRE(::write(s.b.fd, "0123456789", 10) == 10);
  s.b.reset();
  REQUIRE(f.runtime.wait_for(before + 1));
  CHECK(f.runtime.only(&first->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&first->ov).bytes == 10);
  for (int i = 0; i < 2; ++i) {
    test_overlapped* next = f.fresh(101 + static_cast<std::uint64_t>(i));
    REQUIRE(f.io->Recv(as_handle(s.a.fd), buffer, sizeof buffer, &next->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(before + 2 + static_cast<std::size_t>(i)));
    CHECK(f.runtime.only(&next->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&next->ov).bytes == 0);
  }
}

TEST_CASE("API abuse: each is refused with its error, and none completes") {
  engine_fixture f;
  socket_pair s;
  const HANDLE h = as_handle(s.a.fd);
  char buffer[16];
  // Null OVERLAPPED.
  CHECK(f.io->Recv(h, buffer, sizeof buffer, nullptr) == E_POINTER);
  CHECK(f.io->Post(f.port, 0, 0, nullptr) == E_POINTER);
  // Unbound handle.
  test_overlapped* o = f.fresh(1);
  CHECK(f.io->Recv(h, buffer, sizeof buffer, &o->ov) == HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE));
  // Double bind.
  REQUIRE(f.manager->Bind(f.port, h) == S_OK);
  CHECK(FAILED(f.manager->Bind(f.port, h)));
  // Double submit of one OVERLAPPED.
  REQUIRE(f.io->Recv(h, buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
  CHECK(f.io->Recv(h, buffer, sizeof buffer, &o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  CHECK(f.io->Post(f.port, 0, 0, &o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  // Lengths of 2^31 and more are taken as they are: the kernel moves what
  // there is, and the byte count comes back exact.
  socket_pair big;
  REQUIRE(f.manager->Bind(f.port, as_handle(big.a.fd)) == S_OK);
  // On the heap: the kernel checks that buffer + length stays in the user
  // address space, which a stack address near its top might not.
  std::vector<char> heap(64);
  char* wide = heap.data();
  test_overlapped* huge = f.fresh(2);
  REQUIRE(::write(big.b.fd, "abcdefghij", 10) == 10);
  REQUIRE(f.io->Recv(as_handle(big.a.fd), wide, 0x80000000u, &huge->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(1));
  CHECK(f.runtime.only(&huge->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&huge->ov).bytes == 10);
  fd_guard file(temp_file());
  REQUIRE(::write(file.fd, "0123456789", 10) == 10);
  REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);
  test_overlapped* whole = f.fresh(3);
  set_offset(whole->ov, 0);
  REQUIRE(f.io->Read(as_handle(file.fd), wide, 0xFFFFFFFFu, &whole->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(f.runtime.only(&whole->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&whole->ov).bytes == 10);
  // Close, then bind to the closed port, then close again.
  REQUIRE(f.manager->CloseIoCompletionPort(f.port) == S_OK);
  CHECK(f.runtime.only(&o->ov).error == ERROR_OPERATION_ABORTED);  // the pending receive
  socket_pair late;
  CHECK(f.manager->Bind(f.port, as_handle(late.a.fd)) == E_INVALIDARG);
  CHECK(f.manager->CloseIoCompletionPort(f.port) == E_INVALIDARG);
  CHECK(f.io->Post(f.port, 0, 0, &f.fresh(4)->ov) == E_INVALIDARG);
  f.settle();
  CHECK(f.runtime.count() == 3);  // the two long reads and the aborted receive, nothing else
}
