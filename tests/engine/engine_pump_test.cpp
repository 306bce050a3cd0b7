// A pumped engine (IOCM_PUMPED): no thread of its own; completions are
// delivered on the thread that pumps, in queue order, and only there (or
// by a wait of Close, Unbind or Release on the calling thread when nobody
// pumps). Run once per backend, like every engine test.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "iocm/engine.h"
#include "support/engine_fixture.h"
#include "support/kernel_objects.h"
#include "support/op_ledger.h"
#include "support/watchdog.h"

using namespace iocm_test;
using namespace std::chrono_literals;

namespace {

iocm_config pumped_config() {
  iocm_config c;
  iocm_config_init(&c);
  c.flags = IOCM_PUMPED;
  return c;
}

struct release_pump {
  void operator()(IIocmPump* p) const noexcept { p->Release(); }
};
using pump_ptr = std::unique_ptr<IIocmPump, release_pump>;

pump_ptr pump_of(IHostIoCompletionManager* m) {
  void* p = nullptr;
  REQUIRE(m->QueryInterface(IID_IIocmPump, &p) == S_OK);
  return pump_ptr(static_cast<IIocmPump*>(p));
}

/// A pumped engine, its runtime and pump; OVERLAPPEDs with tags 0..n-1 and
/// a ledger over them that OnComplete fills (checking the thread).
struct pumped_fixture {
  explicit pumped_fixture(std::size_t n, iocm_config c = pumped_config())
      : engine(c), pump(pump_of(engine.manager.get())), book(n) {
    for (std::size_t i = 0; i < n; ++i) engine.fresh(i);
    engine.runtime.hook = [this](DWORD, DWORD, void* ov) {
      if (std::this_thread::get_id() != owner) off_thread.fetch_add(1);
      book.completed(holder_of<test_overlapped>(ov)->tag);
    };
  }
  test_overlapped& ov(std::size_t i) { return *engine.overlappeds[i]; }
  /// Pumps until `n` completions in all, or 10 s of pumping.
  bool pump_until(std::uint64_t n) {
    for (int i = 0; i < 1000 && book.completions() < n; ++i) {
      DWORD got = 0;
      REQUIRE(pump->Pump(10, &got) == S_OK);
    }
    return book.completions() >= n;
  }

  std::thread::id owner = std::this_thread::get_id();
  std::atomic<int> off_thread{0};
  engine_fixture engine;
  pump_ptr pump;
  op_ledger book;
};

}  // namespace

TEST_CASE("a pumped engine starts no thread and delivers only when pumped, on the pumping thread") {
  pumped_fixture f(64);
  auto& e = f.engine;
  socket_pair s;
  REQUIRE(e.manager->Bind(e.port, as_handle(s.a.fd)) == S_OK);
  for (std::size_t i = 0; i < 32; ++i)
    f.book.answered(i,
                    e.io->Post(e.port, 7, static_cast<DWORD>(i), &f.ov(i).ov) == IOCM_E_IO_PENDING);
  for (std::size_t i = 32; i < 64; ++i)
    f.book.answered(i, e.io->Nop(as_handle(s.a.fd), &f.ov(i).ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.book.count().accepted == 64);
  std::this_thread::sleep_for(50ms);
  CHECK(f.book.completions() == 0);  // nobody pumped

  DWORD delivered = 0;
  REQUIRE(f.pump->Pump(0, &delivered) == S_OK);
  // One Pump(0) delivers everything it can get to (the nops may still be
  // in the kernel for a moment); the rest comes with the next ones.
  CHECK(delivered >= 32);
  REQUIRE(f.pump_until(64));
  CHECK(f.off_thread.load() == 0);
  for (std::size_t i = 0; i < 32; ++i) {
    const completion_seen c = e.runtime.only(&f.ov(i).ov);
    CHECK(c.error == 7);
    CHECK(c.bytes == i);
  }
  CHECK(f.book.report("pumped: posts and nops"));

  DWORD threads = 0;
  REQUIRE(e.manager->GetAvailableThreads(&threads) == S_OK);  // limits are kept, govern nothing
  CHECK(threads >= 1);
}

TEST_CASE("a pumped engine delivers one producer's posts in order, the same on every run") {
  std::vector<std::uintptr_t> first;
  for (int run = 0; run < 2; ++run) {
    pumped_fixture f(200);
    auto& e = f.engine;
    std::vector<std::uintptr_t> order;
    // A completion re-posts its OVERLAPPED once: those come after.
    std::size_t reposted = 0;
    auto repost = [&](DWORD, DWORD bytes, void* pv) {
      auto* o = holder_of<test_overlapped>(pv);
      order.push_back(o->tag);
      f.book.completed(o->tag);
      if (bytes == 0 && o->tag % 3 == 0 && reposted < 50) {
        ++reposted;
        f.book.answered(o->tag, e.io->Post(e.port, 0, 1, &o->ov) == IOCM_E_IO_PENDING);
      }
    };
    e.runtime.hook = repost;
    for (std::size_t i = 0; i < 200; ++i)
      f.book.answered(i, e.io->Post(e.port, 0, 0, &f.ov(i).ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.pump_until(200 + 50));
    CHECK(reposted == 50);
    for (std::size_t i = 0; i < 200; ++i) CHECK(order[i] == i);  // FIFO per producer
    if (run == 0)
      first = order;
    else
      CHECK(order == first);
    CHECK(f.book.report("pumped: order"));
  }
}

TEST_CASE("Pump waits: the time runs out, or a post, a submission or the kernel ends it") {
  pumped_fixture f(4);
  auto& e = f.engine;
  DWORD delivered = 99;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(f.pump->Pump(60, &delivered) == S_OK);
  CHECK(delivered == 0);
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);  // it did wait

  // A post from another thread wakes a pump that waits without limit.
  std::thread poster([&] {
    std::this_thread::sleep_for(30ms);
    f.book.answered(0, e.io->Post(e.port, 0, 5, &f.ov(0).ov) == IOCM_E_IO_PENDING);
  });
  REQUIRE(f.pump->Pump(IOCM_INFINITE, &delivered) == S_OK);
  poster.join();
  CHECK(delivered == 1);

  // A receive completes when the peer writes, during the wait.
  socket_pair s;
  REQUIRE(e.manager->Bind(e.port, as_handle(s.a.fd)) == S_OK);
  char buffer[16] = {};
  f.book.answered(
      1, e.io->Recv(as_handle(s.a.fd), buffer, sizeof buffer, &f.ov(1).ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.pump->Pump(0, &delivered) == S_OK);  // the receive goes to the kernel
  CHECK(delivered == 0);
  std::thread peer([&] {
    std::this_thread::sleep_for(30ms);
    CHECK(::write(s.b.fd, "pumped", 6) == 6);
  });
  DWORD total = 0;
  while (total == 0) {
    REQUIRE(f.pump->Pump(IOCM_INFINITE, &delivered) == S_OK);
    total += delivered;
  }
  peer.join();
  CHECK(e.runtime.only(&f.ov(1).ov).bytes == 6);
  CHECK(std::memcmp(buffer, "pumped", 6) == 0);

  // A submission from another thread wakes it too (the nop then completes).
  std::thread submitter([&] {
    std::this_thread::sleep_for(30ms);
    f.book.answered(2, e.io->Nop(as_handle(s.a.fd), &f.ov(2).ov) == IOCM_E_IO_PENDING);
  });
  total = 0;
  while (total == 0) {
    REQUIRE(f.pump->Pump(IOCM_INFINITE, &delivered) == S_OK);
    total += delivered;
  }
  submitter.join();
  CHECK(f.off_thread.load() == 0);
  CHECK(f.book.report("pumped: waits"));
}

TEST_CASE("Close with nobody pumping delivers the aborted operations itself; Unbind returns") {
  pumped_fixture f(8);
  auto& e = f.engine;
  socket_pair s, t;
  REQUIRE(e.manager->Bind(e.port, as_handle(s.a.fd)) == S_OK);
  REQUIRE(e.manager->Bind(e.port, as_handle(t.a.fd)) == S_OK);
  char buffer[8][8];
  for (std::size_t i = 0; i < 4; ++i)
    f.book.answered(i,
                    e.io->Recv(as_handle(s.a.fd), buffer[i], 8, &f.ov(i).ov) == IOCM_E_IO_PENDING);
  for (std::size_t i = 4; i < 6; ++i)
    f.book.answered(i,
                    e.io->Recv(as_handle(t.a.fd), buffer[i], 8, &f.ov(i).ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.pump->Pump(0, nullptr) == S_OK);  // some go to the kernel, some wait in the inbox
  REQUIRE(e.io->Unbind(as_handle(t.a.fd)) == S_OK);
  REQUIRE(e.manager->CloseIoCompletionPort(e.port) == S_OK);
  // Close returned: everything of the port was delivered, here.
  CHECK(f.book.completions() >= 4);
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(e.runtime.only(&f.ov(i).ov).error == ERROR_OPERATION_ABORTED);
  e.port = nullptr;
  REQUIRE(f.pump_until(6));
  for (std::size_t i = 4; i < 6; ++i)
    CHECK(e.runtime.only(&f.ov(i).ov).error == ERROR_OPERATION_ABORTED);
  CHECK(f.off_thread.load() == 0);
  CHECK(f.book.report("pumped: close and unbind"));
}

TEST_CASE("Close from inside OnComplete during a pump: the rest of the batch is not held hostage") {
  pumped_fixture f(40);
  auto& e = f.engine;
  HANDLE second = nullptr;
  REQUIRE(e.manager->CreateIoCompletionPort(&second) == S_OK);
  HRESULT closed = E_FAIL;
  std::size_t seen_before_close = 0;
  e.runtime.hook = [&](DWORD, DWORD, void* pv) {
    auto* o = holder_of<test_overlapped>(pv);
    f.book.completed(o->tag);
    if (o->tag == 0) {
      // The pump's batch holds the second port's posts behind this one.
      closed = e.manager->CloseIoCompletionPort(second);
      seen_before_close = f.book.completions();
    }
  };
  f.book.answered(0, e.io->Post(e.port, 0, 0, &f.ov(0).ov) == IOCM_E_IO_PENDING);
  for (std::size_t i = 1; i < 40; ++i)
    f.book.answered(
        i, e.io->Post(i % 2 == 0 ? e.port : second, 0, 0, &f.ov(i).ov) == IOCM_E_IO_PENDING);
  DWORD delivered = 0;
  REQUIRE(f.pump->Pump(0, &delivered) == S_OK);
  CHECK(closed == S_OK);
  // Close returned only after the second port's 20 posts were delivered.
  CHECK(seen_before_close >= 21);
  CHECK(delivered == 40);
  CHECK(f.book.report("pumped: close inside OnComplete"));
}

TEST_CASE("the last Release inside OnComplete during a pump") {
  test_overlapped ovs[16];
  op_ledger book(16);
  recording_runtime runtime;
  IHostIoCompletionManager* m = nullptr;
  const iocm_config c = pumped_config();
  REQUIRE(iocm_create_host_io_completion_manager(&c, &m) == S_OK);
  REQUIRE(m->SetCLRIoCompletionManager(&runtime) == S_OK);
  host_io_ptr io = io_of(m);
  pump_ptr pump = pump_of(m);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  for (std::size_t i = 0; i < 16; ++i) {
    ovs[i].tag = i;
    REQUIRE(m->InitializeHostOverlapped(&ovs[i].ov) == S_OK);
    book.answered(i, io->Post(port, 0, 0, &ovs[i].ov) == IOCM_E_IO_PENDING);
  }
  io.reset();
  m->Release();
  IIocmPump* last = pump.release();
  runtime.hook = [&](DWORD, DWORD, void* pv) {
    const std::size_t tag = holder_of<test_overlapped>(pv)->tag;
    book.completed(tag);
    if (tag == 3) last->Release();  // the engine goes away once this pump returns
  };
  DWORD delivered = 0;
  REQUIRE(last->Pump(0, &delivered) == S_OK);
  // The teardown (on another thread) delivers what this pump did not.
  for (int i = 0; i < 1000 && book.completions() < 16; ++i) std::this_thread::sleep_for(5ms);
  CHECK(book.report("pumped: last Release inside OnComplete"));
  CHECK(book.completions() == 16);
  // Let the teardown finish before the runtime and OVERLAPPEDs go.
  for (int i = 0; i < 1000 && runtime.refs.load() != 1; ++i) std::this_thread::sleep_for(5ms);
  CHECK(runtime.refs.load() == 1);
}

TEST_CASE("full queue and inbox in a pumped engine: posts refused at once, submissions move on") {
  iocm_config c = pumped_config();
  c.queue_capacity = 64;
  c.inbox_capacity = 64;
  pumped_fixture f(600, c);
  auto& e = f.engine;
  // Posts: nobody drains the queue but a pump, so a full one refuses at once.
  std::size_t refused = 0;
  for (std::size_t i = 0; i < 300; ++i)
    if (!f.book.answered(i, e.io->Post(e.port, 0, 0, &f.ov(i).ov) == IOCM_E_IO_PENDING)) {
      CHECK(e.runtime.count() == 0);
      ++refused;
    }
  CHECK(refused > 0);
  const std::uint64_t posted = f.book.count().accepted;
  CHECK(posted >= 64);
  // Submissions: a full inbox is moved to the kernel by the submitter.
  socket_pair s;
  REQUIRE(e.manager->Bind(e.port, as_handle(s.a.fd)) == S_OK);
  for (std::size_t i = 300; i < 600; ++i)
    CHECK(f.book.answered(i, e.io->Nop(as_handle(s.a.fd), &f.ov(i).ov) == IOCM_E_IO_PENDING));
  // One Pump delivers at most queue_capacity: a pump always returns.
  DWORD delivered = 0;
  REQUIRE(f.pump->Pump(0, &delivered) == S_OK);
  CHECK(delivered <= 64);
  CHECK(delivered > 0);
  REQUIRE(f.pump_until(posted + 300));
  CHECK(f.book.report("pumped: full queue and inbox"));
}

TEST_CASE("pump misuse: nested, concurrent, on a threaded engine, bad configs") {
  pumped_fixture f(4);
  auto& e = f.engine;
  HRESULT nested = S_OK;
  e.runtime.hook = [&](DWORD, DWORD, void* pv) {
    f.book.completed(holder_of<test_overlapped>(pv)->tag);
    nested = f.pump->Pump(0, nullptr);
  };
  f.book.answered(0, e.io->Post(e.port, 0, 0, &f.ov(0).ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.pump_until(1));
  CHECK(nested == HRESULT_FROM_WIN32(ERROR_BUSY));

  // Another thread pumps (waiting without limit): this one is refused.
  std::atomic<bool> started{false};
  DWORD other_got = 0;
  e.runtime.hook = [&](DWORD, DWORD, void* pv) {
    f.book.completed(holder_of<test_overlapped>(pv)->tag);
  };
  std::thread other([&] {
    started.store(true);
    // This thread's Pump(0) below may hold the pump for a moment.
    HRESULT hr;
    while ((hr = f.pump->Pump(IOCM_INFINITE, &other_got)) == HRESULT_FROM_WIN32(ERROR_BUSY))
      std::this_thread::yield();
    CHECK(hr == S_OK);
  });
  while (!started.load()) std::this_thread::yield();
  HRESULT busy = S_OK;
  for (int i = 0; i < 1000 && busy != HRESULT_FROM_WIN32(ERROR_BUSY); ++i) {
    busy = f.pump->Pump(0, nullptr);
    if (busy != HRESULT_FROM_WIN32(ERROR_BUSY)) std::this_thread::sleep_for(1ms);
  }
  CHECK(busy == HRESULT_FROM_WIN32(ERROR_BUSY));
  f.book.answered(1, e.io->Post(e.port, 0, 0, &f.ov(1).ov) == IOCM_E_IO_PENDING);
  other.join();  // the post ended its wait
  CHECK(other_got == 1);
  CHECK(f.book.report("pumped: misuse"));

  // A threaded engine has no pump.
  engine_fixture threaded;
  void* p = reinterpret_cast<void*>(1);
  CHECK(threaded.manager->QueryInterface(IID_IIocmPump, &p) == E_NOINTERFACE);
  CHECK(p == nullptr);
  struct nothing : iocm::completion_handler {
    void on_complete(std::uint32_t, std::uint32_t, OVERLAPPED*) noexcept override {}
  } handler;
  iocm::engine cpp(handler);
  CHECK(cpp.pump(0) == iocm::make_hresult_error(HRESULT_FROM_WIN32(ERROR_INVALID_FUNCTION)));

  // Configs a pumped engine cannot honour.
  iocm_config two = pumped_config();
  two.pollers = 2;
  IHostIoCompletionManager* m = nullptr;
  std::string said;
  two.log = [](void* ctx, std::uint32_t, const char* text) {
    *static_cast<std::string*>(ctx) = text;
  };
  two.log_context = &said;
  CHECK(iocm_create_host_io_completion_manager(&two, &m) == E_INVALIDARG);
  CHECK(said.find("IOCM_PUMPED") != std::string::npos);
  iocm_config defer = pumped_config();
  defer.ring_setup = IOCM_RING_DEFER_TASKRUN;
  defer.log = two.log;
  defer.log_context = &said;
  CHECK(iocm_create_host_io_completion_manager(&defer, &m) == E_INVALIDARG);
  CHECK(m == nullptr);
}

TEST_CASE("the C++ face pumps too") {
  struct counting : iocm::completion_handler {
    void on_complete(std::uint32_t, std::uint32_t bytes, OVERLAPPED*) noexcept override {
      total += bytes;
      ++calls;
    }
    std::uint32_t total = 0, calls = 0;
  } handler;
  iocm::engine_config c = iocm::default_engine_config();
  c.flags = IOCM_PUMPED;
  iocm::engine engine(handler, c);
  CHECK(engine.stats().notifiers == 0);
  CHECK(engine.stats().pollers == 1);
  const iocm::port_handle port = engine.create_port();
  iocm::overlapped o[3];
  for (std::uint32_t i = 0; i < 3; ++i) REQUIRE(!engine.post(port, 0, i + 1, o[i]));
  std::uint32_t delivered = 0;
  REQUIRE(!engine.pump(0, &delivered));
  CHECK(delivered == 3);
  CHECK(handler.calls == 3);
  CHECK(handler.total == 6);
}

TEST_CASE(
    "Close with a full inbox does not hold the bind lock against the pump: a callback that "
    "Binds (as an Accept's does) goes on, and Close returns") {
  // The pump's owner is the only thread that empties the inbox. Close must
  // not wait for room there while holding what that owner's OnComplete
  // wants (the bind lock).
  iocm_config c = pumped_config();
  c.inbox_capacity = 64;
  constexpr std::size_t n = 512;
  pumped_fixture f(n, c);
  auto& e = f.engine;
  HANDLE other = nullptr;
  REQUIRE(e.manager->CreateIoCompletionPort(&other) == S_OK);
  socket_pair s;  // on the port Close closes: it has something to cancel
  socket_pair t;  // bound from inside the callback
  REQUIRE(e.manager->Bind(e.port, as_handle(s.a.fd)) == S_OK);
  std::atomic<int> stage{0};
  std::atomic<HRESULT> bind_result{E_FAIL};
  e.runtime.hook = [&](DWORD, DWORD, void* ov) {
    const auto tag = holder_of<test_overlapped>(ov)->tag;
    f.book.completed(tag);
    if (tag != 0) return;
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
    bind_result.store(e.manager->Bind(other, as_handle(t.a.fd)));
  };
  std::atomic<bool> stop{false};
  std::thread pumper([&] {
    while (!stop.load()) (void)f.pump->Pump(5, nullptr);
  });
  f.book.answered(0, e.io->Post(e.port, 0, 0, &f.ov(0).ov) == IOCM_E_IO_PENDING);
  while (stage.load() != 1) std::this_thread::yield();
  // The pump is inside OnComplete: fill the inbox until a Nop is refused.
  std::size_t next = 1;
  for (; next < n / 2; ++next)
    if (!f.book.answered(next, e.io->Nop(as_handle(s.a.fd), &f.ov(next).ov) == IOCM_E_IO_PENDING))
      break;
  REQUIRE(next < n / 2);  // the inbox filled up
  std::atomic<HRESULT> close_result{E_FAIL};
  std::thread closer([&] { close_result.store(e.manager->CloseIoCompletionPort(e.port)); });
  // Close has begun once the port refuses posts.
  for (++next; next < n; ++next) {
    if (!f.book.answered(next, e.io->Post(e.port, 0, 0, &f.ov(next).ov) == IOCM_E_IO_PENDING))
      break;
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(next < n);
  stage.store(2);  // the callback now Binds
  must_return("Close with a full inbox and a pump inside OnComplete", [&] { closer.join(); });
  stop.store(true);
  pumper.join();
  CHECK(close_result.load() == S_OK);
  CHECK(bind_result.load() == S_OK);
  REQUIRE(e.io->Unbind(as_handle(t.a.fd)) == S_OK);
  CHECK(f.book.report("pumped: Close with a full inbox"));
}
