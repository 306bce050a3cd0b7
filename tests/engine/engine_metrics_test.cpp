// What the engine counts about itself (IIocmMetrics, iocm::engine::metrics):
// every count checked against what the test did, on each backend, threaded,
// handed off and pumped.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
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
  CHECK(m.accepted == 3 * each);
  CHECK(m.accepted_posts == each);
  CHECK(m.started[IOCM_KIND_NOP] == each);
  CHECK(m.started[IOCM_KIND_READ] == each);
  CHECK(m.started[IOCM_KIND_POST] == 0);  // Posts never go through a poller
  CHECK(m.completed[IOCM_KIND_POST] == each);
  CHECK(m.completed[IOCM_KIND_NOP] == each);
  CHECK(m.completed[IOCM_KIND_READ] == each);
  CHECK(m.completed[IOCM_KIND_ABORTED] == 0);
  CHECK(m.delivered_inline + m.delivered_by_notifiers + m.delivered_by_pump == 3 * each);
  // Every operation's completion came in some harvest.
  std::uint64_t sized = 0;
  for (const std::uint64_t h : m.harvest_sizes) sized += h;
  CHECK(m.harvests >= 1);
  CHECK(sized == m.harvests);
  CHECK(m.kernel_refusals[IOCM_REFUSED_DROPPED] == 0);
}

}  // namespace

TEST_CASE("metrics count each kind accepted, started and completed, and who delivered it") {
  mix_fixture x;
  engine_fixture& f = x.f;
  const iocm_metrics before = read_metrics(x.metrics.get());
  CHECK(before.pollers == 2);
  CHECK(before.accepted == 0);
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
  CHECK(after.started[IOCM_KIND_RECV] == 1);
  CHECK(after.completed[IOCM_KIND_ABORTED] == 1);
  CHECK(after.completed[IOCM_KIND_RECV] == 0);
  CHECK(after.accepted == 121);
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
  CHECK(m.completed[IOCM_KIND_NOP] == 10);
  CHECK(m.completed[IOCM_KIND_POST] == 1);
  CHECK(m.started[IOCM_KIND_NOP] == 10);
  pump->Release();
}

TEST_CASE("GetMetrics refuses a null pointer and a struct smaller than its first version") {
  engine_fixture f;
  metrics_ptr metrics = metrics_of(f.manager.get());
  CHECK(metrics->GetMetrics(nullptr) == E_POINTER);
  iocm_metrics m{};
  m.struct_size = sizeof m - 8;
  m.accepted = 12345;
  CHECK(metrics->GetMetrics(&m) == E_INVALIDARG);
  CHECK(m.accepted == 12345);  // untouched
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
  CHECK(m.accepted_posts == 5);
  CHECK(m.completed[IOCM_KIND_POST] == 5);
  CHECK(h.done.load() == 5);
}
