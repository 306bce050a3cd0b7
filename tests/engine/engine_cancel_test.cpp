// Cancel works like CancelIoEx: the OVERLAPPED is only a key. The engine
// never writes to or reads through an OVERLAPPED it does not own at that
// moment (one that completed may be freed or reused at once), and Cancel's
// answer is the truth: S_OK means the operation was found and will
// complete aborted (unless it finished first), ERROR_NOT_FOUND that no
// operation with that key was in flight on that handle. Run once per
// backend, and under the address and thread sanitizers.
#include <doctest/doctest.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"
#include "support/op_ledger.h"

using namespace iocm_test;
using namespace std::chrono_literals;

namespace {

constexpr HRESULT not_found = HRESULT_FROM_WIN32(ERROR_NOT_FOUND);

/// OVERLAPPEDs on pages of their own that become inaccessible once their
/// owner gives them back: a read or write through one afterwards faults,
/// in any build, where a heap block freed and reused would not.
class guarded_overlappeds {
 public:
  explicit guarded_overlappeds(std::size_t n) : n_(n) {
    base_ = static_cast<char*>(
        ::mmap(nullptr, n * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(base_ != MAP_FAILED);
  }
  ~guarded_overlappeds() { ::munmap(base_, n_ * page); }
  test_overlapped* at(std::size_t i) { return new (base_ + i * page) test_overlapped(); }
  /// Called from OnComplete: the runtime frees the OVERLAPPED.
  void revoke(void* ov) { REQUIRE(::mprotect(ov, page, PROT_NONE) == 0); }

 private:
  static constexpr std::size_t page = 4096;
  std::size_t n_;
  char* base_;
};

}  // namespace

TEST_CASE(
    "Cancel of an OVERLAPPED that completed and was freed meanwhile never touches it: "
    "ERROR_NOT_FOUND, or S_OK when it was still in flight") {
  engine_fixture f;
  socket_pair s;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  constexpr std::size_t rounds = 1000;
  guarded_overlappeds pages(rounds);
  op_ledger book(rounds);
  std::atomic<std::size_t> aborted{0};
  f.runtime.hook = [&](DWORD error, DWORD, void* ov) {
    auto* o = holder_of<test_overlapped>(ov);
    book.completed(o->tag);
    if (error == ERROR_OPERATION_ABORTED) aborted.fetch_add(1);
    pages.revoke(ov);  // freed: no byte of it may be touched again
  };
  std::atomic<test_overlapped*> target{nullptr};
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> found{0}, missed{0};
  std::thread canceller([&] {
    while (!stop.load()) {
      test_overlapped* o = target.load();
      if (o == nullptr) continue;
      const HRESULT hr = f.io->Cancel(as_handle(s.a.fd), &o->ov);
      if (hr == S_OK)
        found.fetch_add(1);
      else if (hr == not_found)
        missed.fetch_add(1);
      else
        FAIL_CHECK("Cancel answered 0x" << std::hex << static_cast<std::uint32_t>(hr));
    }
  });
  char buf[4];
  for (std::size_t i = 0; i < rounds; ++i) {
    test_overlapped* o = pages.at(i);
    o->tag = i;
    REQUIRE(f.manager->InitializeHostOverlapped(&o->ov) == S_OK);
    REQUIRE(book.answered(i, f.io->Recv(as_handle(s.a.fd), buf, 1, &o->ov) == IOCM_E_IO_PENDING));
    target.store(o);
    if (i % 2 == 0) REQUIRE(::write(s.b.fd, "x", 1) == 1);  // races the cancels
    while (book.completions() <= i) std::this_thread::yield();
  }
  stop.store(true);
  canceller.join();
  // Data written for a receive that was cancelled first is still there.
  f.io.reset();
  f.manager.reset();
  CHECK(book.report(ledger_name("cancel: freed OVERLAPPEDs").c_str()));
  CHECK(aborted.load() >= rounds / 2);  // the odd rounds end only by a cancel
  CHECK(found.load() >= aborted.load());
  MESSAGE("cancels that found their operation: " << found.load()
                                                 << ", not found: " << missed.load());
}

TEST_CASE(
    "Cancel on another thread than the submitter: found only once submitted, and then never "
    "lost") {
  engine_fixture f;
  socket_pair s;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  constexpr std::size_t rounds = 1000;
  op_ledger book(rounds);
  std::vector<DWORD> error(rounds, 0);
  test_overlapped* o = f.fresh();
  std::atomic<std::size_t> round{0};
  f.runtime.hook = [&](DWORD e, DWORD, void* ov) {
    const std::size_t r = round.load();
    error[r] = e;
    book.completed(holder_of<test_overlapped>(ov) == o ? r : rounds);
  };
  std::atomic<std::size_t> armed{rounds};  // the round whose receive the canceller chases
  std::atomic<std::size_t> done_cancelling{rounds};
  std::atomic<bool> stop{false};
  std::thread canceller([&] {
    std::size_t last = rounds;
    while (!stop.load()) {
      const std::size_t r = armed.load();
      if (r == last || r == rounds) continue;
      // Until the receive is in flight the answer is ERROR_NOT_FOUND; once
      // S_OK, it must complete aborted.
      const HRESULT hr = f.io->Cancel(as_handle(s.a.fd), &o->ov);
      if (hr == not_found) continue;
      CHECK(hr == S_OK);
      last = r;
      done_cancelling.store(r);
    }
  });
  char buf[4];
  for (std::size_t r = 0; r < rounds; ++r) {
    round.store(r);
    armed.store(r);  // the canceller starts before the submission
    REQUIRE(book.answered(r, f.io->Recv(as_handle(s.a.fd), buf, 1, &o->ov) == IOCM_E_IO_PENDING));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (book.completions() <= r && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    if (book.completions() <= r) {
      FAIL_CHECK("round " << r << ": Cancel answered S_OK (" << (done_cancelling.load() == r)
                          << ") but the receive never completed");
      break;
    }
    CHECK(error[r] == ERROR_OPERATION_ABORTED);
    while (done_cancelling.load() != r) std::this_thread::yield();
  }
  stop.store(true);
  canceller.join();
  f.io.reset();
  f.manager.reset();
  CHECK(book.report(ledger_name("cancel: racing the submitter").c_str()));
}

TEST_CASE("Cancel answers: what is in flight on that handle, and nothing else") {
  engine_fixture f;
  socket_pair s, t;
  REQUIRE(f.manager->Bind(f.port, as_handle(s.a.fd)) == S_OK);
  REQUIRE(f.manager->Bind(f.port, as_handle(t.a.fd)) == S_OK);
  char buf[8];
  test_overlapped* o = f.fresh();
  // Nothing in flight: neither form finds anything.
  CHECK(f.io->Cancel(as_handle(s.a.fd), &o->ov) == not_found);
  CHECK(f.io->Cancel(as_handle(s.a.fd), nullptr) == not_found);
  REQUIRE(f.io->Recv(as_handle(s.a.fd), buf, sizeof buf, &o->ov) == IOCM_E_IO_PENDING);
  // Another handle's operations are not this handle's.
  CHECK(f.io->Cancel(as_handle(t.a.fd), nullptr) == not_found);
  CHECK(f.io->Cancel(as_handle(s.a.fd), nullptr) == S_OK);
  REQUIRE(f.runtime.wait_for(1));
  CHECK(f.runtime.only(&o->ov).error == ERROR_OPERATION_ABORTED);
  // Completed: no longer found, though it is the same OVERLAPPED.
  CHECK(f.io->Cancel(as_handle(s.a.fd), &o->ov) == not_found);
  CHECK(f.io->Cancel(as_handle(s.a.fd), nullptr) == not_found);
  // Finished before the cancel: it keeps its result; the cancel finds nothing.
  test_overlapped* read = f.fresh();
  REQUIRE(::write(s.b.fd, "abc", 3) == 3);
  REQUIRE(f.io->Recv(as_handle(s.a.fd), buf, sizeof buf, &read->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(f.io->Cancel(as_handle(s.a.fd), &read->ov) == not_found);
  CHECK(f.runtime.only(&read->ov).bytes == 3);
}
