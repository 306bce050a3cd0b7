// The engine as the engine benchmarks drive it: an engine with one poller
// and one notifier (or pumped), a port and a bound socket; the slots a host
// thread submits with, and the runtime whose OnComplete frees them.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"

namespace iocm_bench {

using namespace iocm::hosting;
using clock_type = std::chrono::steady_clock;

/// The T (derived from iocm::overlapped, the OVERLAPPED with iocm's host
/// area) whose OVERLAPPED is at ov: its first member, at the same address.
template <class T>
T* holder_of(void* ov) noexcept {
  return static_cast<T*>(static_cast<iocm::overlapped*>(ov));
}

// Cache-line aligned, like the peers' jobs (post_peers.cpp): a slot the
// notifier completes never shares a line with the one the host posts next.
struct alignas(64) slot : iocm::overlapped {
  std::atomic<bool> busy{false};
  clock_type::time_point sent{};
};

/// The runtime side of a benchmark: an ICLRIoCompletionManager that lives
/// as long as the benchmark (reference counting is a formality); a
/// benchmark's runtime adds OnComplete.
struct runtime_base : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** p) override {
    *p = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
};

struct bench_runtime final : runtime_base {
  HRESULT OnComplete(DWORD error, DWORD n, void* ov) override {
    auto* s = holder_of<slot>(ov);
    if (error == 0) bytes.fetch_add(n, std::memory_order_relaxed);
    if (record_latency) latency_ns = (clock_type::now() - s->sent).count();
    // Counted before the slot is freed, so the final tally sees it.
    completed.fetch_add(1, std::memory_order_relaxed);
    s->busy.store(false, std::memory_order_release);
    return S_OK;
  }
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> bytes{0};  // of successful operations
  bool record_latency = false;
  std::int64_t latency_ns = 0;  // written by the notifier before busy=false
};

/// One engine with a bound socket, set up outside the timed loops.
struct engine_under_test {
  /// flags: IOCM_PUMPED for a pumped engine (no thread of its own: the
  /// benchmark's thread delivers, through pump_wait).
  explicit engine_under_test(std::uint32_t notifier_spin,
                             std::uint32_t backend = IOCM_BACKEND_URING,
                             ICLRIoCompletionManager* clr = nullptr, std::uint32_t flags = 0) {
    iocm_config c;
    iocm_config_init(&c);
    c.backend = backend;  // named by the benchmark, never left to the environment
    c.flags = flags;
    c.pollers = 1;
    c.min_threads = 1;
    c.max_threads = 1;
    c.notifier_spin = notifier_spin;
    if (iocm_create_host_io_completion_manager(&c, &manager) != S_OK)
      throw std::runtime_error("iocm: engine creation failed");
    void* p = nullptr;
    manager->QueryInterface(IID_IIocmHostIo, &p);
    io = static_cast<IIocmHostIo*>(p);
    if ((flags & IOCM_PUMPED) != 0 && manager->QueryInterface(IID_IIocmPump, &p) == S_OK)
      pump = static_cast<IIocmPump*>(p);
    manager->SetCLRIoCompletionManager(clr != nullptr ? clr : &runtime);
    manager->CreateIoCompletionPort(&port);
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::runtime_error("socketpair");
    handle = reinterpret_cast<HANDLE>(static_cast<intptr_t>(fds[0]));
    manager->Bind(port, handle);
  }
  /// Binds one more descriptor to the port.
  /// Binds fd; with modes, sets them too (IIocmHostIo2::SetCompletionModes).
  void bind(int fd, DWORD modes = 0) {
    const auto h = reinterpret_cast<HANDLE>(static_cast<intptr_t>(fd));
    if (manager->Bind(port, h) != S_OK) throw std::runtime_error("iocm: Bind failed");
    if (modes == 0) return;
    void* p = nullptr;
    if (manager->QueryInterface(IID_IIocmHostIo2, &p) != S_OK)
      throw std::runtime_error("iocm: no IIocmHostIo2");
    auto* io2 = static_cast<IIocmHostIo2*>(p);
    const HRESULT hr = io2->SetCompletionModes(h, modes);
    io2->Release();
    if (hr != S_OK) throw std::runtime_error("iocm: SetCompletionModes failed");
  }
  /// A pumped engine: delivers what is ready, sleeping in the kernel until
  /// something is (as a single-thread loop waits for its ring).
  void pump_wait() {
    if (pump->Pump(IOCM_INFINITE, nullptr) != S_OK) throw std::runtime_error("iocm: Pump failed");
  }
  ~engine_under_test() {
    if (pump != nullptr) pump->Release();
    io->Release();
    manager->Release();
    ::close(fds[0]);
    ::close(fds[1]);
  }
  bench_runtime runtime;
  IHostIoCompletionManager* manager = nullptr;
  IIocmHostIo* io = nullptr;
  IIocmPump* pump = nullptr;  // a pumped engine's
  HANDLE port = nullptr;
  HANDLE handle = nullptr;
  int fds[2] = {-1, -1};
};

}  // namespace iocm_bench
