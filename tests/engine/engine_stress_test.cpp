// Multi-threaded stress through the whole engine: host threads submit nops
// (through pollers and the kernel) and posts (straight to the queue), 1M
// operations in all (fewer under sanitizers); an op-id ledger proves none
// was lost or duplicated, and every completion carries its own values.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/op_ledger.h"

using namespace iocm_test;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int scale = 10;
#else
constexpr int scale = 1;
#endif

/// Ledger entry and in-flight flag per OVERLAPPED; OnComplete checks both.
struct ledger_runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** ppv) override {
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* pv) override {
    auto* o = holder_of<slot>(pv);
    const std::uint64_t id = o->id;
    // Posts carry (id % 1000, id & 0xFFFFFFFF); nops carry (0, 0).
    const bool is_post = (id & 1) == 0;
    if (is_post ? (error != id % 1000 || bytes != static_cast<DWORD>(id))
                : (error != 0 || bytes != 0))
      wrong.fetch_add(1, std::memory_order_relaxed);
    book->completed(id);
    // Release: the submitter may reuse the OVERLAPPED once it sees this.
    o->busy.store(false, std::memory_order_release);
    return S_OK;
  }
  struct slot : iocm::overlapped {
    std::uint64_t id = 0;
    std::atomic<bool> busy{false};
  };
  op_ledger* book = nullptr;
  std::atomic<std::uint64_t> wrong{0};
};

}  // namespace

namespace {

/// `pairs`: socket pairs bound to the port (Bind spreads handles over the
/// pollers round-robin, so 2 x pairs handles reach that many pollers); nops
/// go to all of them in turn.
void run_ledger(const char* name, const iocm_config& c, int threads, int per_thread, int window,
                int pairs = 1) {
  op_ledger book(static_cast<std::size_t>(threads) * per_thread);
  ledger_runtime rt;
  rt.book = &book;
  manager_ptr m = make_manager(c);
  host_io_ptr io = io_of(m.get());
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  std::vector<int> fds;
  for (int i = 0; i < pairs; ++i) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    for (const int fd : sv) {
      fds.push_back(fd);
      REQUIRE(m->Bind(port, as_handle(fd)) == S_OK);  // the next poller's
    }
  }

  // A pumped engine: one more thread of the test's own does all delivery.
  std::atomic<bool> stop_pumping{false};
  std::thread pumper;
  IIocmPump* pump = nullptr;
  if ((c.flags & IOCM_PUMPED) != 0) {
    void* p = nullptr;
    REQUIRE(m->QueryInterface(IID_IIocmPump, &p) == S_OK);
    pump = static_cast<IIocmPump*>(p);
    pumper = std::thread([&] {
      while (!stop_pumping.load()) CHECK(pump->Pump(5, nullptr) == S_OK);
    });
  }

  std::vector<std::vector<ledger_runtime::slot>> pools(threads);
  for (auto& p : pools) p = std::vector<ledger_runtime::slot>(window);
  std::atomic<int> refused{0};
  std::atomic<int> saturated{0};  // submissions retried after ERROR_NO_SYSTEM_RESOURCES
  std::latch start(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      auto& pool = pools[t];
      for (auto& s : pool) CHECK(m->InitializeHostOverlapped(&s.ov) == S_OK);
      start.arrive_and_wait();
      for (int i = 0; i < per_thread; ++i) {
        auto& s = pool[i % window];
        // Acquire pairs with OnComplete's release: its previous use is over.
        while (s.busy.load(std::memory_order_acquire)) std::this_thread::yield();
        s.id = static_cast<std::uint64_t>(t) * per_thread + i;
        s.busy.store(true, std::memory_order_relaxed);
        HRESULT hr;
        // ERROR_NO_SYSTEM_RESOURCES: the engine waited for room in a full
        // inbox or queue and found none; a host retries later. On a loaded
        // machine draining can take that long. Bounded, so that an engine
        // that never drains still fails the test.
        for (int tries = 0;; ++tries) {
          hr = (s.id & 1) == 0 ? io->Post(port, static_cast<DWORD>(s.id % 1000),
                                          static_cast<DWORD>(s.id), &s.ov)
                               : io->Nop(as_handle(fds[(t + i / 2) % fds.size()]), &s.ov);
          if (hr != HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES) || tries == 100) break;
          saturated.fetch_add(1, std::memory_order_relaxed);
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        if (!book.answered(s.id, hr == IOCM_E_IO_PENDING)) {
          refused.fetch_add(1);
          s.busy.store(false);
        }
      }
      for (auto& s : pool)
        while (s.busy.load(std::memory_order_acquire)) std::this_thread::yield();
    });
  for (auto& w : workers) w.join();
  if (pump != nullptr) {
    stop_pumping.store(true);
    pumper.join();
    pump->Release();
  }

  if (saturated.load() != 0)
    MESSAGE(saturated.load(), " submissions retried: the engine was saturated");
  CHECK(refused.load() == 0);
  CHECK(rt.wrong.load() == 0);
  CHECK(book.report(ledger_name(name).c_str()));
  CHECK(book.count().accepted == book.size());  // every id was used
  io.reset();
  m.reset();
  for (const int fd : fds) ::close(fd);
}

}  // namespace

TEST_CASE("1M operations from 4 threads: 0 lost, 0 duplicated, values intact") {
  iocm_config c = small_config();
  c.max_threads = 3;
  run_ledger("engine stress: 4 threads, posts and nops", c, 4, 250000 / scale, 128);
}

TEST_CASE("tiny rings, lanes and inboxes: backpressure everywhere, still nothing lost") {
  // A 2-entry SQ (4-entry CQ), 64-record queue lanes and inboxes: the
  // in-flight limit, the full-lane stop and the full-inbox retry all run.
  iocm_config c = small_config();
  c.ring_entries = 2;
  c.queue_capacity = 64;
  c.inbox_capacity = 64;
  c.max_threads = 2;
  run_ledger("engine stress: tiny rings, lanes and inboxes", c, 3, 60000 / scale, 256);
}

TEST_CASE("a pumped engine: 3 threads submit, one pumps; nothing lost") {
  iocm_config c = small_config();
  c.pollers = 1;
  c.flags = IOCM_PUMPED;
  run_ledger("engine stress: pumped, 3 submitters and a pump", c, 3, 60000 / scale, 128);
}

TEST_CASE("128 pollers on a described 2 x 64-core machine, on whatever CPUs are here") {
  // The engine a 128-core host would start: a poller per core, two shards,
  // notifiers for every CPU the description has (2 x 128), most of them
  // unpinned here. Nops reach every poller; nothing is lost.
  iocm_config c = small_config();
  c.topology = "synthetic:pack:2 numa:1 core:64 pu:1";
  c.pollers = 128;
  c.max_threads = 0;  // 2 x the described CPUs
  run_ledger("engine stress: 128 pollers on 2 x 64 described cores", c, 4, 40000 / scale, 64, 64);
}
