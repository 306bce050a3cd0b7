// What the engine counts about itself (IIocmMetrics, iocm::engine::metrics):
// every count checked against what the test did, on each backend, threaded,
// handed off and pumped.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <thread>

#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm::hosting;
using namespace iocm_test;

namespace {

using metrics_ptr = std::unique_ptr<IIocmMetrics, release_deleter>;

metrics_ptr metrics_of(IHostIoCompletionManager* m) {
  void* p = nullptr;
  REQUIRE(m->QueryInterface(IID_IIocmMetrics, &p) == S_OK);
  return metrics_ptr(static_cast<IIocmMetrics*>(p));
}

iocm_metrics read_metrics(IIocmMetrics* m) {
  iocm_metrics out{};
  out.struct_size = sizeof out;
  REQUIRE(m->GetMetrics(&out) == S_OK);
  CHECK(out.struct_size == sizeof out);
  return out;
}

std::uint64_t completed_total(const iocm_metrics& m) {
  std::uint64_t n = 0;
  for (const std::uint64_t c : m.completed) n += c;
  return n;
}

std::uint64_t accepted_total(const iocm_metrics& m) {
  std::uint64_t n = 0;
  for (const std::uint64_t c : m.accepted) n += c;
  return n;
}

/// The metrics once `n` OnComplete calls have returned (a delivery is
/// counted after its OnComplete returns), for at most ten seconds.
iocm_metrics metrics_after(IIocmMetrics* m, std::uint64_t n) {
  iocm_metrics got = read_metrics(m);
  for (int i = 0; i < 10000 && completed_total(got) < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    got = read_metrics(m);
  }
  return got;
}

/// An engine with a bound file (64 KiB pages of 4 KiB) and a bound socket,
/// and its metrics interface.
struct mix_fixture {
  explicit mix_fixture(const iocm_config& c = small_config())
      : f(c), metrics(metrics_of(f.manager.get())), file(temp_file()) {
    const std::string data(64 * 4096, 'x');
    REQUIRE(::pwrite(file.fd, data.data(), data.size(), 0) == static_cast<ssize_t>(data.size()));
    REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);
    REQUIRE(f.manager->Bind(f.port, as_handle(ends.a.fd)) == S_OK);
  }
  /// Posts, nops on the socket and 4 KiB file reads, `each` of every kind;
  /// the metrics once all 3 x each OnComplete calls have returned.
  iocm_metrics run(std::uint32_t each) {
    static char buffer[64][4096];
    REQUIRE(each <= 64);
    for (std::uint32_t i = 0; i < each; ++i) {
      REQUIRE(f.io->Post(f.port, 0, i, &f.fresh()->ov) == IOCM_E_IO_PENDING);
      REQUIRE(f.io->Nop(as_handle(ends.a.fd), &f.fresh()->ov) == IOCM_E_IO_PENDING);
      test_overlapped* r = f.fresh();
      set_offset(r->ov, std::uint64_t{i} * 4096);
      REQUIRE(f.io->Read(as_handle(file.fd), buffer[i], 4096, &r->ov) == IOCM_E_IO_PENDING);
    }
    REQUIRE(f.runtime.wait_for(3 * each));
    return metrics_after(metrics.get(), 3 * each);
  }

  engine_fixture f;
  metrics_ptr metrics;
  fd_guard file;
  socket_pair ends;
};

void check_mix(const iocm_metrics& m, std::uint64_t each) {
  CHECK(accepted_total(m) == 3 * each);
  CHECK(m.accepted[IOCM_KIND_POST] == each);
  CHECK(m.accepted[IOCM_KIND_NOP] == each);
  CHECK(m.accepted[IOCM_KIND_READ] == each);
  CHECK(m.accepted[IOCM_KIND_ABORTED] == 0);  // nothing is accepted aborted
  CHECK(m.completed[IOCM_KIND_POST] == each);
  CHECK(m.completed[IOCM_KIND_NOP] == each);
  CHECK(m.completed[IOCM_KIND_READ] == each);
  CHECK(m.completed[IOCM_KIND_ABORTED] == 0);
  CHECK(m.delivered_inline + m.delivered_by_notifiers + m.delivered_by_pump == 3 * each);
  // Every harvest is counted in one size bucket. With io_uring every Nop
  // and Read completes through a CQE, so some harvest took them; with
  // epoll a harvest is an epoll_wait that returned events, and Nops and
  // file reads complete on the poller without one (a poller that never
  // slept has harvested nothing).
  std::uint64_t sized = 0;
  for (const std::uint64_t h : m.harvest_sizes) sized += h;
  const char* backend = std::getenv("IOCM_BACKEND");
  if (backend != nullptr && std::string_view(backend) == "uring") CHECK(m.harvests >= 1);
  CHECK(sized == m.harvests);
  CHECK(m.kernel_refusals[IOCM_REFUSED_DROPPED] == 0);
}

}  // namespace

TEST_CASE("metrics count each kind accepted and completed, and who delivered it") {
  mix_fixture x;
  engine_fixture& f = x.f;
  const iocm_metrics before = read_metrics(x.metrics.get());
  CHECK(before.pollers == 2);
  CHECK(accepted_total(before) == 0);
  CHECK(completed_total(before) == 0);
  const iocm_metrics m = x.run(40);
  check_mix(m, 40);
  CHECK(m.delivered_by_pump == 0);
  CHECK(m.notifiers >= 1);

  // A cancelled Recv completes aborted, and is counted so.
  char byte;
  test_overlapped* waiting = f.fresh();
  REQUIRE(f.io->Recv(as_handle(x.ends.a.fd), &byte, 1, &waiting->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.io->Cancel(as_handle(x.ends.a.fd), &waiting->ov) == S_OK);
  const iocm_metrics after = metrics_after(x.metrics.get(), 121);
  CHECK(after.accepted[IOCM_KIND_RECV] == 1);
  CHECK(after.completed[IOCM_KIND_ABORTED] == 1);
  CHECK(after.completed[IOCM_KIND_RECV] == 0);
  CHECK(accepted_total(after) == 121);

  // A Post counts as a Post, whatever error its caller gave it.
  REQUIRE(f.io->Post(f.port, ERROR_OPERATION_ABORTED, 0, &f.fresh()->ov) == IOCM_E_IO_PENDING);
  const iocm_metrics posted = metrics_after(x.metrics.get(), 122);
  CHECK(posted.completed[IOCM_KIND_POST] == 41);
  CHECK(posted.completed[IOCM_KIND_ABORTED] == 1);
}

TEST_CASE("metrics count what a Close inside OnComplete settled, and what it aborted") {
  mix_fixture x;
  engine_fixture& f = x.f;
  // The Post's OnComplete closes the port while a Recv still waits: Close
  // counts the Post delivered itself (it cannot finish before Close
  // returns), and the Recv completes aborted.
  std::atomic<HRESULT> closed{E_FAIL};
  std::atomic<bool> close_in_hook{false};
  f.runtime.hook = [&](DWORD, DWORD, void*) {
    if (close_in_hook.exchange(false)) closed.store(f.manager->CloseIoCompletionPort(f.port));
  };
  char byte;
  test_overlapped* waiting = f.fresh();
  REQUIRE(f.io->Recv(as_handle(x.ends.a.fd), &byte, 1, &waiting->ov) == IOCM_E_IO_PENDING);
  close_in_hook.store(true);
  REQUIRE(f.io->Post(f.port, 0, 7, &f.fresh()->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(closed.load() == S_OK);
  const iocm_metrics m = metrics_after(x.metrics.get(), 2);
  CHECK(m.accepted[IOCM_KIND_POST] == 1);
  CHECK(m.accepted[IOCM_KIND_RECV] == 1);
  CHECK(m.completed[IOCM_KIND_POST] == 1);
  CHECK(m.completed[IOCM_KIND_ABORTED] == 1);
  CHECK(completed_total(m) == 2);
  CHECK(m.delivered_inline + m.delivered_by_notifiers + m.delivered_by_pump == 2);
}

TEST_CASE("metrics of a handing-off engine: every record through the queue, wake-ups counted") {
  iocm_config c = small_config();
  c.flags |= IOCM_HANDOFF;
  mix_fixture x(c);
  const iocm_metrics m = x.run(64);
  check_mix(m, 64);
  CHECK(m.delivered_inline == 0);
  CHECK(m.delivered_by_notifiers == 192);
  // Each poller publish either woke a notifier or found one awake; Posts
  // wake too (counted in sent, never in avoided).
  CHECK(m.wakeups_sent + m.wakeups_avoided >= 1);
  CHECK(m.queue_high_water >= 1);
  CHECK(m.queue_high_water <= c.queue_capacity);
}

TEST_CASE("metrics of a pumped engine: the pump delivers everything") {
  iocm_config c;
  iocm_config_init(&c);
  c.flags |= IOCM_PUMPED;
  engine_fixture f(c);
  metrics_ptr metrics = metrics_of(f.manager.get());
  void* p = nullptr;
  REQUIRE(f.manager->QueryInterface(IID_IIocmPump, &p) == S_OK);
  auto* pump = static_cast<IIocmPump*>(p);
  socket_pair pipe_ends;
  REQUIRE(f.manager->Bind(f.port, as_handle(pipe_ends.a.fd)) == S_OK);
  for (int i = 0; i < 10; ++i)
    REQUIRE(f.io->Nop(as_handle(pipe_ends.a.fd), &f.fresh()->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.io->Post(f.port, 0, 0, &f.fresh()->ov) == IOCM_E_IO_PENDING);
  for (int i = 0; i < 1000 && f.runtime.count() < 11; ++i) {
    DWORD delivered = 0;
    REQUIRE(pump->Pump(10, &delivered) == S_OK);
  }
  REQUIRE(f.runtime.count() == 11);
  const iocm_metrics m = read_metrics(metrics.get());
  CHECK(m.pollers == 1);
  CHECK(m.notifiers == 0);
  CHECK(m.delivered_by_pump == 11);
  CHECK(m.delivered_inline + m.delivered_by_notifiers == 0);
  // Nobody to wake: the pump takes what its poller publishes.
  CHECK(m.wakeups_sent + m.wakeups_avoided == 0);
  CHECK(m.completed[IOCM_KIND_NOP] == 10);
  CHECK(m.completed[IOCM_KIND_POST] == 1);
  CHECK(m.accepted[IOCM_KIND_NOP] == 10);
  CHECK(m.accepted[IOCM_KIND_POST] == 1);
  pump->Release();
}

TEST_CASE("GetMetrics refuses a null pointer and a struct smaller than its first version") {
  engine_fixture f;
  metrics_ptr metrics = metrics_of(f.manager.get());
  CHECK(metrics->GetMetrics(nullptr) == E_POINTER);
  iocm_metrics m{};
  m.struct_size = sizeof m - 8;
  m.accepted[IOCM_KIND_READ] = 12345;
  CHECK(metrics->GetMetrics(&m) == E_INVALIDARG);
  CHECK(m.accepted[IOCM_KIND_READ] == 12345);  // untouched
  // The same object answers every interface.
  void* unknown = nullptr;
  REQUIRE(metrics->QueryInterface(IID_IHostIoCompletionManager, &unknown) == S_OK);
  CHECK(unknown == f.manager.get());
  static_cast<IHostIoCompletionManager*>(unknown)->Release();
}

TEST_CASE("iocm::engine::metrics gives the same counts") {
  struct counting final : iocm::completion_handler {
    void on_complete(std::uint32_t, std::uint32_t, OVERLAPPED*) noexcept override {
      done.fetch_add(1);
    }
    std::atomic<int> done{0};
  } h;
  iocm::engine e(h, small_config());
  const auto port = e.create_port();
  iocm::overlapped o[5];
  for (auto& x : o) REQUIRE_FALSE(e.post(port, 0, 1, x));
  iocm_metrics m = e.metrics();
  for (int i = 0; i < 10000 && completed_total(m) < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    m = e.metrics();
  }
  CHECK(m.struct_size == sizeof m);
  CHECK(m.accepted[IOCM_KIND_POST] == 5);
  CHECK(accepted_total(m) == 5);
  CHECK(m.completed[IOCM_KIND_POST] == 5);
  CHECK(h.done.load() == 5);
}
