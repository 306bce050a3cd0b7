// Injected faults (fault_injector.h) on both backends: each error the kernel
// may answer, on the calls where it can, with every operation completing
// exactly once and a clear error where one is due. Every test also checks
// that its faults really fired, so none can pass without them. The cases
// that need a real io_uring are in the doctest suite "uring": CTest runs
// them apart from the others, skipped where io_uring cannot be set up
// (tests/CMakeLists.txt).
#include <doctest/doctest.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fault_injector.h"
#include "iocm/engine.h"
#include "iocm/win32_errors.h"
#include "support/engine_fixture.h"
#include "support/kernel_objects.h"
#include "support/op_ledger.h"

using namespace iocm_test;
using namespace iocm::hosting;

namespace {

struct seen_completion {
  std::uint32_t error;
  std::uint32_t bytes;
  const OVERLAPPED* ov;
};

/// Records every completion, and keeps the op-id ledger (tests/support/op_ledger.h)
/// with an id per OVERLAPPED: the test counts what the engine accepted
/// (took()), OnComplete what it delivered; the ledger is reported and
/// checked when this goes, after the engine (declared after it) is gone.
class ledger : public iocm::completion_handler {
 public:
  explicit ledger(const char* name) : name_(name) {}
  ~ledger() { CHECK(book_.report(name_)); }
  ledger(const ledger&) = delete;
  ledger& operator=(const ledger&) = delete;

  void on_complete(std::uint32_t error, std::uint32_t bytes, OVERLAPPED* ov) noexcept override {
    {
      std::lock_guard lock(mutex_);
      seen_.push_back({error, bytes, ov});
      book_.completed(id_of(ov));
    }
    cv_.notify_all();
  }
  /// Counts o accepted when the submission answered no error; true then.
  bool took(std::error_code refused, const iocm::overlapped& o) {
    std::lock_guard lock(mutex_);
    return book_.answered(id_of(&o.ov), !refused);
  }
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return seen_.size() >= n; });
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return seen_.size();
  }
  /// How many completions o has had so far.
  std::size_t times(const iocm::overlapped& o) {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& c : seen_) n += c.ov == &o.ov ? 1 : 0;
    return n;
  }
  /// Waits until o has completed; false after 10 seconds.
  bool wait_for(const iocm::overlapped& o) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] {
      for (const auto& c : seen_)
        if (c.ov == &o.ov) return true;
      return false;
    });
  }
  /// The one completion of o; fails the test unless there is exactly one.
  seen_completion only(const iocm::overlapped& o) {
    std::lock_guard lock(mutex_);
    const seen_completion* found = nullptr;
    int n = 0;
    for (const auto& c : seen_)
      if (c.ov == &o.ov) {
        found = &c;
        ++n;
      }
    REQUIRE(n == 1);
    return *found;
  }

 private:
  std::size_t id_of(const OVERLAPPED* ov) {  // mutex_ held
    const auto [at, fresh] = ids_.try_emplace(ov, ids_.size());
    return at->second;  // past the ledger's size: counted as unexpected
  }

  const char* name_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<seen_completion> seen_;
  std::unordered_map<const OVERLAPPED*, std::size_t> ids_;
  op_ledger book_{4096};
};

/// What the engine said through its log callback.
struct log_lines {
  static void sink(void* context, std::uint32_t level, const char* message) {
    auto* self = static_cast<log_lines*>(context);
    std::lock_guard lock(self->mutex);
    self->lines.emplace_back(level, message);
  }
  /// Lines at `level` that contain `part`.
  int count(std::uint32_t level, const char* part = "") {
    std::lock_guard lock(mutex);
    int n = 0;
    for (const auto& [l, text] : lines)
      if (l == level && text.find(part) != std::string::npos) ++n;
    return n;
  }
  std::mutex mutex;
  std::vector<std::pair<std::uint32_t, std::string>> lines;
};

iocm::engine_config config_for(std::uint32_t backend, log_lines& log, std::uint32_t pollers = 1) {
  iocm::engine_config c = iocm::default_engine_config();
  c.backend = backend;
  c.pollers = pollers;
  c.max_threads = 4;
  c.log = &log_lines::sink;
  c.log_context = &log;
  return c;
}

std::vector<std::unique_ptr<iocm::overlapped>> overlappeds(std::size_t n) {
  std::vector<std::unique_ptr<iocm::overlapped>> v;
  for (std::size_t i = 0; i < n; ++i) v.push_back(std::make_unique<iocm::overlapped>());
  return v;
}

/// A temporary file of `size` bytes, byte i = i * 7 mod 251.
int pattern_file(std::size_t size) {
  const int fd = temp_file();
  std::vector<unsigned char> data(size);
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<unsigned char>(i * 7 % 251);
  REQUIRE(::pwrite(fd, data.data(), size, 0) == static_cast<ssize_t>(size));
  return fd;
}
bool is_pattern(const unsigned char* p, std::size_t n, std::size_t offset) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != static_cast<unsigned char>((offset + i) * 7 % 251)) return false;
  return true;
}

/// With the faults armed, creating an engine on `backend` throws
/// `expected` (in hresult_category()).
void creation_refused(std::uint32_t backend, log_lines& log, HRESULT expected) {
  ledger done("fault: creation refused");
  try {
    iocm::engine engine(done, config_for(backend, log));
    FAIL("created although the kernel refused");
  } catch (const std::system_error& error) {
    CHECK(error.code().value() == static_cast<int>(expected));
  }
}

/// 32 file reads of 1 KiB and 32 nops with `faults` armed: each completes
/// once, the reads with their bytes.
void reads_and_nops_complete(iocm::engine& engine, ledger& done, fault_injector& faults) {
  constexpr std::size_t n = 32, chunk = 1024;
  fd_guard file(pattern_file(n * chunk));
  REQUIRE(!engine.bind(file.fd));
  std::vector<unsigned char> buffer(n * chunk);
  auto reads = overlappeds(n), nops = overlappeds(n);
  faults.arm();
  for (std::size_t i = 0; i < n; ++i) {
    reads[i]->set_offset(i * chunk);
    REQUIRE(
        done.took(engine.read(file.fd, buffer.data() + i * chunk, chunk, *reads[i]), *reads[i]));
    REQUIRE(done.took(engine.nop(file.fd, *nops[i]), *nops[i]));
  }
  REQUIRE(done.wait_for(2 * n));
  for (std::size_t i = 0; i < n; ++i) {
    const seen_completion r = done.only(*reads[i]);
    CHECK(r.error == ERROR_SUCCESS);
    CHECK(r.bytes == chunk);
    CHECK(done.only(*nops[i]).error == ERROR_SUCCESS);
  }
  CHECK(is_pattern(buffer.data(), buffer.size(), 0));
  CHECK(done.count() == 2 * n);  // and nothing more: the ledger, after the engine
  faults.disarm();
  REQUIRE(!engine.unbind(file.fd));
}

}  // namespace

TEST_CASE(
    "io_uring_enter: EINTR, EAGAIN, EBUSY and ENOMEM are retried; each operation completes once" *
    doctest::test_suite("uring")) {
  for (const int e : {EINTR, EAGAIN, EBUSY, ENOMEM}) {
    CAPTURE(e);
    log_lines log;
    fault_injector faults({{.which = call::uring_enter, .answer = -e, .times = 6}});
    ledger done("fault: io_uring_enter");
    iocm::engine engine(done, config_for(IOCM_BACKEND_URING, log));
    reads_and_nops_complete(engine, done, faults);
    CHECK(faults.fired(0) == 6);
    // Out of memory is worth a warning (once); the others are routine.
    CHECK(log.count(IOCM_LOG_WARNING, "ENOMEM") == (e == ENOMEM ? 1 : 0));
    CHECK(log.count(IOCM_LOG_ERROR) == 0);
  }
}

TEST_CASE("io_uring_enter: EBADR and unexpected errors are said once, as errors; nothing is lost" *
          doctest::test_suite("uring")) {
  for (const int e : {EBADR, EFAULT}) {
    CAPTURE(e);
    log_lines log;
    fault_injector faults({{.which = call::uring_enter, .answer = -e, .times = 4}});
    ledger done("fault: io_uring_enter");
    iocm::engine engine(done, config_for(IOCM_BACKEND_URING, log));
    reads_and_nops_complete(engine, done, faults);
    CHECK(faults.fired(0) == 4);
    CHECK(log.count(IOCM_LOG_ERROR, e == EBADR ? "dropped completions (EBADR" : "(EFAULT)") == 1);
    CHECK(log.count(IOCM_LOG_ERROR) == 1);
  }
}

TEST_CASE("io_uring CQEs: -EINTR goes to the kernel again; short and failed results are delivered" *
          doctest::test_suite("uring")) {
  constexpr std::uint32_t chunk = 1024;
  log_lines log;
  auto ops = overlappeds(5);
  fault_injector faults({
      {.which = call::uring_peek, .answer = -EINTR, .times = 2, .overlapped = &ops[0]->ov},
      {.which = call::uring_peek, .short_to = 100, .overlapped = &ops[1]->ov},
      {.which = call::uring_peek, .answer = -ENOMEM, .overlapped = &ops[2]->ov},
      {.which = call::uring_peek, .answer = -EAGAIN, .overlapped = &ops[3]->ov},
  });
  ledger done("fault: io_uring CQEs");
  iocm::engine engine(done, config_for(IOCM_BACKEND_URING, log));
  fd_guard file(pattern_file(5 * chunk));
  REQUIRE(!engine.bind(file.fd));
  std::vector<unsigned char> buffer(5 * chunk);
  faults.arm();
  for (std::size_t i = 0; i < 5; ++i) {
    ops[i]->set_offset(i * chunk);
    REQUIRE(done.took(engine.read(file.fd, buffer.data() + i * chunk, chunk, *ops[i]), *ops[i]));
  }
  REQUIRE(done.wait_for(5));
  // Interrupted twice, read on the third try.
  CHECK(done.only(*ops[0]).error == ERROR_SUCCESS);
  CHECK(done.only(*ops[0]).bytes == chunk);
  CHECK(is_pattern(buffer.data(), chunk, 0));
  CHECK(faults.fired(0) == 2);
  // Short: a success with the bytes the kernel reported.
  CHECK(done.only(*ops[1]).error == ERROR_SUCCESS);
  CHECK(done.only(*ops[1]).bytes == 100);
  // Errors: their Win32 codes, no bytes.
  CHECK(done.only(*ops[2]).error == ERROR_NOT_ENOUGH_MEMORY);
  CHECK(done.only(*ops[2]).bytes == 0);
  CHECK(done.only(*ops[3]).error == ERROR_RETRY);
  CHECK(done.only(*ops[4]).bytes == chunk);
  for (std::size_t i = 1; i < 4; ++i) CHECK(faults.fired(i) == 1);
  CHECK(done.count() == 5);  // and nothing more: the ledger, after the engine
}

TEST_CASE(
    "io_uring refused at setup: auto falls back to epoll and says why; forced fails clearly") {
  ::unsetenv("IOCM_BACKEND");
  SUBCASE("auto, EPERM") {
    log_lines log;
    fault_injector faults({{.which = call::uring_setup, .answer = -EPERM, .times = 0}});
    faults.arm();
    ledger done("fault: io_uring refused at setup");
    iocm::engine engine(done, config_for(IOCM_BACKEND_AUTO, log));
    CHECK(engine.stats().backend == IOCM_BACKEND_EPOLL);
    CHECK(faults.fired(0) >= 1);
    CHECK(log.count(IOCM_LOG_INFO, "Operation not permitted") == 1);
    CHECK(log.count(IOCM_LOG_INFO, "epoll") == 1);
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    fd_guard r(fds[0]), w(fds[1]);
    REQUIRE(!engine.bind(r.fd));
    iocm::overlapped o;
    REQUIRE(done.took(engine.nop(r.fd, o), o));
    REQUIRE(done.wait_for(1));
    CHECK(done.only(o).error == ERROR_SUCCESS);
    REQUIRE(!engine.unbind(r.fd));
  }
  SUBCASE("forced io_uring, EPERM or ENOMEM") {
    for (const auto& [e, expected] : {std::pair{EPERM, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED)},
                                      std::pair{ENOMEM, E_OUTOFMEMORY}}) {
      CAPTURE(e);
      log_lines log;
      fault_injector faults({{.which = call::uring_setup, .answer = -e, .times = 0}});
      faults.arm();
      creation_refused(IOCM_BACKEND_URING, log, expected);
      CHECK(faults.fired(0) >= 1);
    }
  }
}

TEST_CASE("io_uring CQEs: -EINTR after a cancel of the whole handle is not retried" *
          doctest::test_suite("uring")) {
  // The kernel answers -EINTR for work its worker was doing when a cancel
  // interrupted it. After Unbind (or Cancel of a handle, or Close) a retry
  // would outlive the cancel: the operation must complete aborted.
  log_lines log;
  iocm::overlapped op;
  fault_injector faults({{.which = call::uring_peek, .answer = -EINTR, .overlapped = &op.ov}});
  ledger done("fault: io_uring CQEs");
  iocm::engine engine(done, config_for(IOCM_BACKEND_URING, log));
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  fd_guard r(fds[0]), w(fds[1]);
  REQUIRE(!engine.bind(r.fd));
  char in[8];
  REQUIRE(done.took(engine.read(r.fd, in, sizeof in, op), op));
  faults.arm();
  REQUIRE(!engine.unbind(r.fd));
  REQUIRE(done.wait_for(1));
  CHECK(done.only(op).error == ERROR_OPERATION_ABORTED);
  CHECK(faults.fired(0) == 1);
  // Nothing was left in the kernel on the old pipe: data written now is
  // read by nobody (a read still there would complete a second time, now or
  // aborted when the engine goes: the ledger, after the engine, says so).
  REQUIRE(::write(w.fd, "OLD", 3) == 3);
  CHECK(done.count() == 1);
}

TEST_CASE(
    "io_uring CQEs: -EINTR after a cancel of another descriptor of the same poller is retried" *
    doctest::test_suite("uring")) {
  // The rule is per descriptor: a cancel of everything on descriptor B
  // cannot have interrupted an operation on descriptor A, so A's
  // interrupted read goes to the kernel again and reads the data.
  log_lines log;
  iocm::overlapped op, other;
  fault_injector faults({{.which = call::uring_peek, .answer = -EINTR, .overlapped = &op.ov}});
  ledger done("fault: io_uring CQEs");
  iocm::engine engine(done, config_for(IOCM_BACKEND_URING, log));  // one poller
  int a[2], b[2];
  REQUIRE(::pipe2(a, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(b, O_CLOEXEC) == 0);
  fd_guard ar(a[0]), aw(a[1]), br(b[0]), bw(b[1]);
  REQUIRE(!engine.bind(ar.fd));
  REQUIRE(!engine.bind(br.fd));
  char in[8], unused[8];
  REQUIRE(done.took(engine.read(ar.fd, in, sizeof in, op), op));
  REQUIRE(done.took(engine.read(br.fd, unused, sizeof unused, other), other));
  REQUIRE(!engine.unbind(br.fd));  // B's cancel is in the kernel when this returns
  REQUIRE(done.wait_for(other));
  CHECK(done.only(other).error == ERROR_OPERATION_ABORTED);
  faults.arm();
  // A's read completes, and its CQE is made to say interrupted (the bytes
  // it read are gone); the read goes to the kernel again and takes the next.
  REQUIRE(::write(aw.fd, "OLD", 3) == 3);
  REQUIRE(fault_injector::wait_until([&] { return faults.fired(0); }, 1));
  REQUIRE(::write(aw.fd, "NEW", 3) == 3);
  REQUIRE(done.wait_for(op));
  CHECK(done.only(op).error == ERROR_SUCCESS);
  CHECK(done.only(op).bytes == 3);
  CHECK(std::memcmp(in, "NEW", 3) == 0);
}

TEST_CASE(
    "io_uring: 2,000 completions at once into a CQ of 4 entries, while the poller is held: the "
    "kernel keeps the excess, and each completes once" *
    doctest::test_suite("uring")) {
  // Operations are not limited to what the CQ holds (an idle connection's
  // receive would otherwise hold a slot others need); what overflows waits
  // in the kernel (IORING_FEAT_NODROP) until the poller takes it.
  constexpr std::size_t n = 2000;
  std::atomic<bool> held{true};
  fault_injector faults(
      {{.which = call::uring_enter, .times = 1, .hold = &held, .thread = "iocm-poll-0"}});
  log_lines log;
  ledger done("fault: io_uring CQ overflow");
  iocm::engine_config c = config_for(IOCM_BACKEND_URING, log);
  c.ring_entries = 2;  // a CQ of 4 entries
  iocm::engine engine(done, c);
  struct let_go {
    std::atomic<bool>& held;
    ~let_go() { held.store(false, std::memory_order_release); }
  } release_on_exit{held};
  std::vector<std::unique_ptr<socket_pair>> pairs;
  auto recvs = overlappeds(n);
  std::vector<char> bytes(n);
  for (std::size_t i = 0; i < n; ++i) {
    pairs.push_back(std::make_unique<socket_pair>());
    REQUIRE(!engine.bind(pairs[i]->a.fd));
    REQUIRE(done.took(engine.recv(pairs[i]->a.fd, &bytes[i], 1, *recvs[i]), *recvs[i]));
  }
  // Every receive is in the kernel once a Nop behind them all completes.
  iocm::overlapped marker;
  REQUIRE(done.took(engine.nop(pairs[0]->a.fd, marker), marker));
  REQUIRE(done.wait_for(marker));
  faults.arm();
  iocm::overlapped wake;
  REQUIRE(done.took(engine.nop(pairs[0]->a.fd, wake), wake));  // its next wait holds it
  REQUIRE(fault_injector::wait_until([&] { return faults.fired(0); }, 1));
  for (std::size_t i = 0; i < n; ++i) REQUIRE(::write(pairs[i]->b.fd, "z", 1) == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the kernel posts meanwhile
  held.store(false, std::memory_order_release);
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(done.wait_for(*recvs[i]));
    CHECK(done.only(*recvs[i]).error == ERROR_SUCCESS);
    CHECK(done.only(*recvs[i]).bytes == 1);
    CHECK(bytes[i] == 'z');
  }
  REQUIRE(done.wait_for(wake));
  CHECK(log.count(IOCM_LOG_ERROR) == 0);
  for (auto& p : pairs) REQUIRE(!engine.unbind(p->a.fd));
}

TEST_CASE(
    "epoll, Bind: a descriptor that cannot be made non-blocking is not bound (its error), and "
    "is left as it was") {
  // A blocking descriptor's read would stall every descriptor of the poller.
  for (const int e : {EBADF, EIO}) {
    CAPTURE(e);
    log_lines log;
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    fd_guard r(fds[0]), w(fds[1]);
    // F_GETFL goes through; F_SETFL is refused.
    fault_injector faults({{.which = call::fcntl, .answer = -e, .fd = r.fd, .skip = 1}});
    ledger done("fault: Bind's fcntl");
    iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
    faults.arm();
    const std::error_code refused = engine.bind(r.fd);
    CHECK(faults.fired(0) == 1);
    REQUIRE(refused);  // else a read below would block the poller for good
    CHECK(refused.value() ==
          HRESULT_FROM_WIN32(e == EBADF ? ERROR_INVALID_HANDLE : iocm::win32_from_errno(e)));
    CHECK((::fcntl(r.fd, F_GETFL) & O_NONBLOCK) == 0);
    char in[4];
    iocm::overlapped o;
    CHECK(engine.read(r.fd, in, sizeof in, o).value() == HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE));
    // Out of the epoll set too: a later Bind works, and so does the pipe.
    faults.disarm();
    REQUIRE(!engine.bind(r.fd));
    REQUIRE(done.took(engine.read(r.fd, in, sizeof in, o), o));
    REQUIRE(::write(w.fd, "ok", 2) == 2);
    REQUIRE(done.wait_for(o));
    CHECK(done.only(o).bytes == 2);
    REQUIRE(!engine.unbind(r.fd));
  }
}

TEST_CASE("epoll_wait: EINTR is retried; an unexpected error is said once and retried") {
  for (const int e : {EINTR, EBADF}) {
    CAPTURE(e);
    log_lines log;
    fault_injector faults({{.which = call::epoll_wait, .answer = -e, .times = 5}});
    ledger done("fault: epoll_wait");
    iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
    constexpr int pipes = 8;
    std::vector<fd_guard> readers(pipes), writers(pipes);
    for (int i = 0; i < pipes; ++i) {
      int fds[2];
      REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
      readers[i].reset(fds[0]);
      writers[i].reset(fds[1]);
      REQUIRE(!engine.bind(readers[i].fd));
    }
    char in[pipes][8]{};
    auto ops = overlappeds(pipes);
    faults.arm();  // the reads wait for readiness while epoll_wait fails
    for (int i = 0; i < pipes; ++i)
      REQUIRE(done.took(engine.read(readers[i].fd, in[i], sizeof in[i], *ops[i]), *ops[i]));
    // Every refusal came while the reads waited: none made one complete.
    REQUIRE(fault_injector::wait_until([&] { return faults.fired(0); }, 5));
    CHECK(done.count() == 0);
    for (int i = 0; i < pipes; ++i) REQUIRE(::write(writers[i].fd, "data", 4) == 4);
    REQUIRE(done.wait_for(pipes));
    for (int i = 0; i < pipes; ++i) {
      CHECK(done.only(*ops[i]).bytes == 4);
      CHECK(std::memcmp(in[i], "data", 4) == 0);
    }
    CHECK(faults.fired(0) == 5);
    CHECK(log.count(IOCM_LOG_ERROR, "epoll_wait failed") == (e == EINTR ? 0 : 1));
    faults.disarm();
    for (auto& r : readers) REQUIRE(!engine.unbind(r.fd));
  }
}

TEST_CASE("epoll, files: EINTR is retried; short reads, ENOMEM and EAGAIN are delivered") {
  constexpr std::uint32_t chunk = 512;
  fd_guard file(pattern_file(5 * chunk));
  log_lines log;
  // The reads are the file's calls 0, 2, 3, 4 and 5 (call 1: op 0 again).
  fault_injector faults({
      {.which = call::pread, .answer = -EINTR, .fd = file.fd, .skip = 0},
      {.which = call::pread, .fd = file.fd, .skip = 2, .short_to = 100},
      {.which = call::pread, .answer = -ENOMEM, .fd = file.fd, .skip = 3},
      {.which = call::pread, .answer = -EAGAIN, .fd = file.fd, .skip = 4},
  });
  ledger done("fault: epoll, files");
  iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
  REQUIRE(!engine.bind(file.fd));
  std::vector<unsigned char> buffer(5 * chunk);
  auto ops = overlappeds(5);
  faults.arm();
  for (std::size_t i = 0; i < 5; ++i) {
    ops[i]->set_offset(i * chunk);
    REQUIRE(done.took(engine.read(file.fd, buffer.data() + i * chunk, chunk, *ops[i]), *ops[i]));
  }
  REQUIRE(done.wait_for(5));
  CHECK(done.only(*ops[0]).bytes == chunk);
  CHECK(is_pattern(buffer.data(), chunk, 0));
  CHECK(done.only(*ops[1]).error == ERROR_SUCCESS);
  CHECK(done.only(*ops[1]).bytes == 100);
  CHECK(done.only(*ops[2]).error == ERROR_NOT_ENOUGH_MEMORY);
  // A file cannot wait for readiness: EAGAIN is its answer, as with io_uring.
  CHECK(done.only(*ops[3]).error == ERROR_RETRY);
  CHECK(done.only(*ops[4]).bytes == chunk);
  CHECK(is_pattern(buffer.data() + 4 * chunk, chunk, 4 * chunk));
  for (std::size_t i = 0; i < 4; ++i) CHECK(faults.fired(i) == 1);
  faults.disarm();
  REQUIRE(!engine.unbind(file.fd));
}

TEST_CASE("epoll, sockets: EINTR is retried, EAGAIN waits for the next edge, sends may be short") {
  fd_guard client, server;
  connected_pair(client, server);
  log_lines log;
  // The server's receive calls: 0 interrupted, 1 its retry, 2 the second
  // receive's first try, 3 after the next edge (EAGAIN although data
  // waits), 4 after the edge that follows.
  fault_injector faults({
      {.which = call::recv, .answer = -EINTR, .fd = server.fd, .skip = 0},
      {.which = call::recv, .answer = -EAGAIN, .fd = server.fd, .skip = 3},
      {.which = call::send, .fd = client.fd, .short_to = 2},
  });
  ledger done("fault: epoll, sockets");
  iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
  REQUIRE(!engine.bind(client.fd));
  REQUIRE(!engine.bind(server.fd));
  faults.arm();
  char in[16]{};
  // Data waits; the first try is interrupted, the second reads it.
  REQUIRE(::send(client.fd, "hello", 5, 0) == 5);
  iocm::overlapped r0;
  REQUIRE(done.took(engine.recv(server.fd, in, sizeof in, r0), r0));
  REQUIRE(done.wait_for(1));
  CHECK(done.only(r0).bytes == 5);
  CHECK(std::memcmp(in, "hello", 5) == 0);
  // No data: the receive waits for readiness. Data comes, but the kernel
  // says EAGAIN: it waits for the next edge, then takes all there is.
  iocm::overlapped r1;
  REQUIRE(done.took(engine.recv(server.fd, in, sizeof in, r1), r1));
  REQUIRE(fault_injector::wait_until([&] { return faults.seen(1); }, 3));
  REQUIRE(::send(client.fd, "abc", 3, 0) == 3);
  REQUIRE(fault_injector::wait_until([&] { return faults.fired(1); }, 1));
  CHECK(done.count() == 1);
  REQUIRE(::send(client.fd, "def", 3, 0) == 3);
  REQUIRE(done.wait_for(2));
  CHECK(done.only(r1).bytes == 6);
  CHECK(std::memcmp(in, "abcdef", 6) == 0);
  // A short send is a success with the bytes sent.
  iocm::overlapped s0;
  REQUIRE(done.took(engine.send(client.fd, "hello", 5, s0), s0));
  REQUIRE(done.wait_for(3));
  CHECK(done.only(s0).error == ERROR_SUCCESS);
  CHECK(done.only(s0).bytes == 2);
  REQUIRE(::recv(server.fd, in, sizeof in, 0) == 2);
  for (std::size_t i = 0; i < 3; ++i) CHECK(faults.fired(i) == 1);
  faults.disarm();
  REQUIRE(!engine.unbind(client.fd));
  REQUIRE(!engine.unbind(server.fd));
}

TEST_CASE("epoll, accept and connect: interrupted calls are retried; a failed connect says why") {
  tcp_listener l;
  fd_guard c1(tcp_socket()), c2(tcp_socket());
  log_lines log;
  fault_injector faults({
      {.which = call::accept4, .answer = -EINTR, .fd = l.fd.fd},
      // The kernel starts the connection, then the call says EINTR: the
      // retry learns from EALREADY (or EISCONN) that it goes on.
      {.which = call::connect, .answer = -EINTR, .fd = c1.fd, .kernel_first = true},
      {.which = call::connect_result, .answer = -ECONNREFUSED, .fd = c2.fd},
  });
  ledger done("fault: epoll, accept and connect");
  iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
  for (int fd : {l.fd.fd, c1.fd, c2.fd}) REQUIRE(!engine.bind(fd));
  faults.arm();
  int accepted = -1;
  iocm::overlapped a, k1, k2;
  REQUIRE(done.took(engine.accept(l.fd.fd, &accepted, a), a));
  REQUIRE(done.took(engine.connect(c1.fd, &l.addr, sizeof l.addr, k1), k1));
  REQUIRE(done.wait_for(2));
  CHECK(done.only(a).error == ERROR_SUCCESS);
  CHECK(done.only(k1).error == ERROR_SUCCESS);
  fd_guard accepted_guard(accepted);
  REQUIRE(accepted >= 0);
  // The second connect is in progress when the check of its result fails.
  iocm::overlapped a2;
  int accepted2 = -1;
  REQUIRE(done.took(engine.accept(l.fd.fd, &accepted2, a2), a2));
  REQUIRE(done.took(engine.connect(c2.fd, &l.addr, sizeof l.addr, k2), k2));
  REQUIRE(done.wait_for(4));
  fd_guard accepted2_guard(accepted2);
  CHECK(done.only(k2).error == ERROR_CONNECTION_REFUSED);
  CHECK(faults.fired(0) == 1);
  CHECK(faults.fired(1) == 1);
  CHECK(faults.fired(2) == 1);
  faults.disarm();
  for (int fd : {l.fd.fd, c1.fd, c2.fd}) REQUIRE(!engine.unbind(fd));
}

TEST_CASE("epoll, Bind and creation: the kernel's refusals are the caller's errors") {
  log_lines log;
  SUBCASE("epoll_ctl ENOMEM refuses the Bind, which may be tried again") {
    fd_guard client, server;
    connected_pair(client, server);
    fault_injector faults({{.which = call::epoll_ctl, .answer = -ENOMEM, .fd = server.fd}});
    ledger done("fault: epoll, Bind and creation");
    iocm::engine engine(done, config_for(IOCM_BACKEND_EPOLL, log));
    faults.arm();
    CHECK(engine.bind(server.fd).value() == static_cast<int>(E_OUTOFMEMORY));
    REQUIRE(!engine.bind(server.fd));
    CHECK(faults.fired(0) == 1);
    char in[4];
    iocm::overlapped r;
    REQUIRE(done.took(engine.recv(server.fd, in, sizeof in, r), r));
    REQUIRE(::send(client.fd, "x", 1, 0) == 1);
    REQUIRE(done.wait_for(1));
    CHECK(done.only(r).bytes == 1);
    REQUIRE(!engine.unbind(server.fd));
  }
  SUBCASE("epoll_create and eventfd failures refuse the creation") {
    for (const call c : {call::epoll_create, call::eventfd}) {
      fault_injector faults({{.which = c, .answer = -ENOMEM, .times = 0}});
      faults.arm();
      creation_refused(IOCM_BACKEND_EPOLL, log, E_OUTOFMEMORY);
      CHECK(faults.fired(0) >= 1);
    }
  }
}

namespace {

/// Byte streams over loopback TCP through the engine, each driven from its
/// own completions: send what is left after a short send, receive until
/// everything came. Finished when every stream arrived whole.
class streams : public iocm::completion_handler {
 public:
  streams(int count, std::size_t bytes) : conns_(static_cast<std::size_t>(count)) {
    for (std::size_t c = 0; c < conns_.size(); ++c) {
      conn& k = conns_[c];
      connected_pair(k.client, k.server);
      k.out.resize(bytes);
      for (std::size_t i = 0; i < bytes; ++i)
        k.out[i] = static_cast<char>('a' + (i * 31 + c * 7) % 26);
      of_[&k.send_ov.ov] = {&k, true};
      of_[&k.recv_ov.ov] = {&k, false};
    }
  }
  void start(iocm::engine& engine) {
    engine_ = &engine;
    for (conn& k : conns_) {
      REQUIRE(!engine.bind(k.client.fd));
      REQUIRE(!engine.bind(k.server.fd));
    }
    for (conn& k : conns_) {
      REQUIRE(took(k, false, engine.recv(k.server.fd, k.buffer, sizeof k.buffer, k.recv_ov)));
      REQUIRE(took(k, true, engine.send(k.client.fd, k.out.data(), piece(k), k.send_ov)));
    }
  }
  bool wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return finished_ == conns_.size() || failed_; });
  }
  /// Every stream arrived whole and in order, and nothing failed; the
  /// ledger (`name`) balances.
  void check(iocm::engine& engine, const char* name) {
    CHECK(!failed_);
    CHECK(why_ == "");
    for (conn& k : conns_) {
      CHECK(k.in == k.out);
      REQUIRE(!engine.unbind(k.client.fd));
      REQUIRE(!engine.unbind(k.server.fd));
    }
    CHECK(book_.report(name));
  }

  void on_complete(std::uint32_t error, std::uint32_t bytes, OVERLAPPED* ov) noexcept override {
    const auto [k, is_send] = of_.at(ov);
    book_.completed(id_of(*k, is_send));
    if (error != ERROR_SUCCESS || (!is_send && bytes == 0)) {
      fail("error " + std::to_string(error) + " bytes " + std::to_string(bytes));
      return;
    }
    if (is_send) {
      k->sent += bytes;
      if (k->sent < k->out.size() &&
          !took(*k, true,
                engine_->send(k->client.fd, k->out.data() + k->sent, piece(*k), k->send_ov)))
        fail("send refused");
      return;
    }
    k->in.append(k->buffer, bytes);
    if (k->in.size() < k->out.size()) {
      if (!took(*k, false, engine_->recv(k->server.fd, k->buffer, sizeof k->buffer, k->recv_ov)))
        fail("recv refused");
      return;
    }
    std::lock_guard lock(mutex_);
    ++finished_;
    cv_.notify_all();
  }

 private:
  struct conn {
    fd_guard client, server;
    std::string out, in;
    std::size_t sent = 0;
    char buffer[700];
    iocm::overlapped send_ov, recv_ov;
  };
  /// The op-id ledger's id of a connection's send or receive OVERLAPPED.
  std::size_t id_of(const conn& k, bool is_send) const {
    return static_cast<std::size_t>(&k - conns_.data()) * 2 + (is_send ? 1 : 0);
  }
  bool took(const conn& k, bool is_send, std::error_code refused) {
    return book_.answered(id_of(k, is_send), !refused);
  }
  static std::uint32_t piece(const conn& k) {
    return static_cast<std::uint32_t>(std::min<std::size_t>(k.out.size() - k.sent, 1500));
  }
  void fail(std::string why) {
    std::lock_guard lock(mutex_);
    if (!failed_) why_ = std::move(why);
    failed_ = true;
    cv_.notify_all();
  }

  std::vector<conn> conns_;
  op_ledger book_{2 * conns_.size()};
  std::unordered_map<const OVERLAPPED*, std::pair<conn*, bool>> of_;  // read-only once built
  iocm::engine* engine_ = nullptr;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::size_t finished_ = 0;
  bool failed_ = false;
  std::string why_;
};

}  // namespace

/// Six streams of 64 KiB on `backend` with `faults` armed throughout: every
/// byte arrives once, in order; each fault fired; nothing was worth an error.
void streams_survive(std::uint32_t backend, fault_injector& faults, std::size_t fault_count) {
  log_lines log;
  streams s(6, 64 * 1024);
  iocm::engine engine(s, config_for(backend, log, 2));
  faults.arm();
  s.start(engine);
  REQUIRE(s.wait());
  faults.disarm();
  s.check(engine, backend == IOCM_BACKEND_URING ? "fault: streams under steady faults (uring)"
                                                : "fault: streams under steady faults (epoll)");
  for (std::size_t i = 0; i < fault_count; ++i) CHECK(faults.fired(i) > 0);
  CHECK(log.count(IOCM_LOG_ERROR) == 0);
}

TEST_CASE("epoll under steady faults on every call: streams arrive whole, exactly once") {
  fault_injector faults({
      {.which = call::recv, .answer = -EINTR, .times = 0, .every = 3},
      {.which = call::recv, .times = 0, .every = 5, .short_to = 9},
      {.which = call::send, .answer = -EINTR, .times = 0, .every = 4},
      {.which = call::send, .times = 0, .every = 3, .short_to = 11},
      {.which = call::epoll_wait, .answer = -EINTR, .times = 0, .every = 2},
  });
  streams_survive(IOCM_BACKEND_EPOLL, faults, 5);
}

TEST_CASE("io_uring under steady faults on io_uring_enter: streams arrive whole, exactly once" *
          doctest::test_suite("uring")) {
  fault_injector faults({
      {.which = call::uring_enter, .answer = -EINTR, .times = 0, .every = 3},
      {.which = call::uring_enter, .answer = -EBUSY, .times = 0, .every = 5},
      {.which = call::uring_enter, .answer = -EAGAIN, .times = 0, .every = 7},
  });
  streams_survive(IOCM_BACKEND_URING, faults, 3);
}

/// Poller 0 of two on `backend` is held inside its wait for the kernel:
/// operations through poller 1 keep flowing, and poller 0's complete once it
/// moves again.
void stalled_poller(std::uint32_t backend) {
  // Poller 0's next wait for the kernel holds it until the test lets go:
  // meanwhile it takes nothing from its inbox.
  const bool uring = backend == IOCM_BACKEND_URING;
  std::atomic<bool> held{true};
  fault_injector faults({{.which = uring ? call::uring_enter : call::epoll_wait,
                          .times = 1,
                          .hold = &held,
                          .thread = uring ? "iocm-poll-0" : "iocm-epoll-0"}});
  log_lines log;
  ledger done("fault: a stalled poller");
  iocm::engine engine(done, config_for(backend, log, 2));
  // Declared after the engine, so it lets go first on every way out.
  struct let_go {
    std::atomic<bool>& held;
    ~let_go() { held.store(false, std::memory_order_release); }
  } release_on_exit{held};
  int a[2], b[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) == 0);
  fd_guard a0(a[0]), a1(a[1]), b0(b[0]), b1(b[1]);
  REQUIRE(!engine.bind(a0.fd));  // Bind spreads handles: poller 0
  REQUIRE(!engine.bind(b0.fd));  // poller 1
  faults.arm();
  // Work for poller 0 wakes it if it sleeps; its next wait holds it.
  iocm::overlapped wake, stuck;
  REQUIRE(done.took(engine.nop(a0.fd, wake), wake));
  REQUIRE(fault_injector::wait_until([&] { return faults.fired(0); }, 1));
  REQUIRE(done.took(engine.nop(a0.fd, stuck), stuck));  // stays in the held poller's inbox
  // 200 operations through the other poller, one after another.
  auto flowing = overlappeds(200);
  for (auto& o : flowing) {
    REQUIRE(done.took(engine.nop(b0.fd, *o), *o));
    REQUIRE(done.wait_for(*o));
    CHECK(done.only(*o).error == 0);
  }
  CHECK(done.times(stuck) == 0);
  held.store(false, std::memory_order_release);
  REQUIRE(done.wait_for(stuck));
  REQUIRE(done.wait_for(wake));
  CHECK(done.only(stuck).error == 0);
  CHECK(done.only(wake).error == 0);
  CHECK(done.count() == flowing.size() + 2);
  faults.disarm();
  CHECK(log.count(IOCM_LOG_ERROR) == 0);
}

TEST_CASE(
    "a stalled poller (io_uring): the others keep flowing, and its operations still complete once" *
    doctest::test_suite("uring")) {
  stalled_poller(IOCM_BACKEND_URING);
}

TEST_CASE(
    "a stalled poller (epoll): the others keep flowing, and its operations still complete once") {
  stalled_poller(IOCM_BACKEND_EPOLL);
}

TEST_CASE(
    "io_uring: provided buffers refused: receiving-ahead sockets receive Recv by Recv, "
    "said once" *
    doctest::test_suite("uring")) {
  log_lines log;
  fault_injector faults({{.which = call::uring_register_buf_ring, .answer = -EINVAL, .times = 0}});
  engine_fixture f(config_for(IOCM_BACKEND_URING, log));
  void* p = nullptr;
  REQUIRE(f.manager->QueryInterface(IID_IIocmHostIo2, &p) == S_OK);
  auto* io2 = static_cast<IIocmHostIo2*>(p);
  fd_guard client, server;
  connected_pair(client, server);
  REQUIRE(f.manager->Bind(f.port, as_handle(server.fd)) == S_OK);
  REQUIRE(io2->SetCompletionModes(as_handle(server.fd), IOCM_RECEIVE_AHEAD) == S_OK);
  io2->Release();
  faults.arm();
  char buffer[64];
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    REQUIRE(::send(client.fd, "hello", 5, 0) == 5);
    test_overlapped* o = f.fresh();
    REQUIRE(f.io->Recv(as_handle(server.fd), buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(static_cast<std::size_t>(round) + 1));
    CHECK(f.runtime.only(&o->ov).bytes == 5);
    CHECK(std::memcmp(buffer, "hello", 5) == 0);
  }
  // Nothing is taken ahead: bytes with no Recv posted stay in the kernel.
  REQUIRE(::send(client.fd, "more", 4, 0) == 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int held = 0;
  REQUIRE(::ioctl(server.fd, FIONREAD, &held) == 0);
  CHECK(held == 4);
  CHECK(faults.fired(0) == 1);  // tried once, at the first Recv
  CHECK(log.count(IOCM_LOG_INFO, "io_uring_register_buf_ring failed: Invalid argument (EINVAL)") ==
        1);
  CHECK(log.count(IOCM_LOG_ERROR) == 0);
}
