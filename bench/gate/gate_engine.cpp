// The deterministic tier's engine cases: the engine's own dispatch path,
// counted in instructions. A pumped engine (IOCM_PUMPED) starts no thread:
// the thread that calls Pump runs the only poller pass by pass and calls
// OnComplete itself, so a Post -> Pump -> OnComplete cycle, or a submission
// -> Pump -> OnComplete cycle, runs on the measuring thread alone, the same
// instructions every time. On the epoll backend a nop completes in the pass
// and a file read is one pread in it (io_uring would finish work in the
// kernel at times of its own, and its instruction counts would vary).
//
// Each cycle is checked: Pump delivered exactly one record, with the error,
// byte count, OVERLAPPED and (for a read) data that went in; a right one
// adds the weight of the table's record for that iteration, so that
// gate_bench.cpp checks the sum as it does the queue's.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <valgrind/callgrind.h>

#include "gate_cases.h"
#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"

namespace iocm_gate {

namespace {

using namespace iocm::hosting;
using iocm::completion;

/// Runs cycle(i) for i in [0, first) uninstrumented, then for [first,
/// first + iterations) under callgrind's instrumentation; cycle returns
/// whether iteration i came out right. Counts and weighs the measured ones.
template <class Cycle>
engine_result measure(std::uint64_t iterations, std::uint64_t first, const completion* table,
                      std::size_t size, Cycle&& cycle) {
  for (std::uint64_t i = 0; i < first; ++i) (void)cycle(i);
  engine_result r;
  CALLGRIND_START_INSTRUMENTATION;
  for (std::uint64_t i = first; i < first + iterations; ++i) {
    if (!cycle(i)) continue;
    ++r.records;
    r.sum += weigh(table[i % size]);
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  return r;
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "iocm-gate-bench: %s\n", what);
  std::exit(1);
}

/// Keeps what the last OnComplete got; the measured loop checks it.
struct last_completion final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** ppv) override {
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD e, DWORD b, void* o) override {
    ++calls;
    error = e;
    bytes = b;
    ov = o;
    return S_OK;
  }
  std::uint64_t calls = 0;
  DWORD error = 0, bytes = 0;
  void* ov = nullptr;
};

/// A pumped engine on the epoll backend with one port.
class pumped_engine {
 public:
  pumped_engine() {
    iocm_config c;
    iocm_config_init(&c);
    c.flags = IOCM_PUMPED | IOCM_NO_PINNING;
    c.backend = IOCM_BACKEND_EPOLL;
    c.log = [](void*, std::uint32_t, const char*) {};  // placement notes are not results
    if (iocm_create_host_io_completion_manager(&c, &manager_) != S_OK)
      fail("a pumped epoll engine could not be created");
    void* p = nullptr;
    if (manager_->QueryInterface(IID_IIocmHostIo, &p) != S_OK) fail("no IIocmHostIo");
    io_ = static_cast<IIocmHostIo*>(p);
    if (manager_->QueryInterface(IID_IIocmPump, &p) != S_OK) fail("no IIocmPump");
    pump_ = static_cast<IIocmPump*>(p);
    if (manager_->SetCLRIoCompletionManager(&runtime_) != S_OK ||
        manager_->CreateIoCompletionPort(&port_) != S_OK)
      fail("the engine refused its runtime or a port");
  }
  ~pumped_engine() {
    pump_->Release();
    io_->Release();
    manager_->Release();
  }
  pumped_engine(const pumped_engine&) = delete;
  pumped_engine& operator=(const pumped_engine&) = delete;

  void bind(int fd) {
    if (manager_->Bind(port_, reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd))) != S_OK)
      fail("Bind refused");
  }
  IIocmHostIo& io() noexcept { return *io_; }
  HANDLE port() const noexcept { return port_; }
  /// Pump once without waiting; true when it delivered exactly one record,
  /// to runtime().
  bool pump_one() noexcept {
    slowdown();
    const std::uint64_t before = runtime_.calls;
    DWORD delivered = 0;
    return pump_->Pump(0, &delivered) == S_OK && delivered == 1 && runtime_.calls == before + 1;
  }
  const last_completion& runtime() const noexcept { return runtime_; }

 private:
  last_completion runtime_;
  IHostIoCompletionManager* manager_ = nullptr;
  IIocmHostIo* io_ = nullptr;
  IIocmPump* pump_ = nullptr;
  HANDLE port_ = nullptr;
};

HANDLE as_handle(int fd) noexcept {
  return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd));
}

}  // namespace

// Post table[i]'s error and bytes; Pump delivers them.
engine_result engine_post(std::uint64_t iterations, std::uint64_t first, const completion* table,
                          std::size_t size) {
  pumped_engine engine;
  iocm::overlapped slot;
  return measure(iterations, first, table, size, [&](std::uint64_t i) {
    const completion& r = table[i % size];
    slowdown();
    if (engine.io().Post(engine.port(), r.error, r.bytes, &slot.ov) != IOCM_E_IO_PENDING)
      return false;
    const last_completion& got = engine.runtime();
    return engine.pump_one() && got.ov == &slot.ov && got.error == r.error && got.bytes == r.bytes;
  });
}

// A Nop on a bound pipe: the pass takes it from the inbox and completes it.
engine_result engine_nop(std::uint64_t iterations, std::uint64_t first, const completion* table,
                         std::size_t size) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("pipe2 failed");
  engine_result r;
  {
    pumped_engine engine;
    engine.bind(fds[0]);
    iocm::overlapped slot;
    r = measure(iterations, first, table, size, [&](std::uint64_t) {
      slowdown();
      if (engine.io().Nop(as_handle(fds[0]), &slot.ov) != IOCM_E_IO_PENDING) return false;
      const last_completion& got = engine.runtime();
      return engine.pump_one() && got.ov == &slot.ov && got.error == 0 && got.bytes == 0;
    });
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return r;
}

// A 4 KiB Read at block i % 16 of a 64 KiB file whose block k is filled with
// byte k + 1: the pass reads it (pread) and the pump delivers it.
engine_result engine_read4k(std::uint64_t iterations, std::uint64_t first, const completion* table,
                            std::size_t size) {
  constexpr std::size_t block = 4096, blocks = 16;
  char path[] = "/tmp/iocm-gate-XXXXXX";
  const int fd = ::mkostemp(path, O_CLOEXEC);
  if (fd < 0) fail("mkostemp failed");
  ::unlink(path);
  static char buffer[block];
  for (std::size_t k = 0; k < blocks; ++k) {
    std::memset(buffer, static_cast<int>(k + 1), block);
    if (::pwrite(fd, buffer, block, static_cast<off_t>(k * block)) != static_cast<ssize_t>(block))
      fail("writing the file failed");
  }
  engine_result r;
  {
    pumped_engine engine;
    engine.bind(fd);
    iocm::overlapped slot;
    r = measure(iterations, first, table, size, [&](std::uint64_t i) {
      const std::size_t k = i % blocks;
      const char want = static_cast<char>(k + 1);
      slot.set_offset(k * block);
      buffer[0] = buffer[block - 1] = 0;
      slowdown();
      if (engine.io().Read(as_handle(fd), buffer, block, &slot.ov) != IOCM_E_IO_PENDING)
        return false;
      const last_completion& got = engine.runtime();
      return engine.pump_one() && got.ov == &slot.ov && got.error == 0 && got.bytes == block &&
             buffer[0] == want && buffer[block - 1] == want;
    });
  }
  ::close(fd);
  return r;
}

}  // namespace iocm_gate
