// Shared pieces of the engine tests: a runtime stand-in that records every
// OnComplete, a manager wrapper, and fresh OVERLAPPEDs (test_overlapped,
// overlapped.h) that live as long as the engine.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "support/overlapped.h"

namespace iocm_test {

using namespace iocm::hosting;

struct completion_seen {
  DWORD error;
  DWORD bytes;
  void* overlapped;
};

/// The runtime side: records completions; an optional hook runs inside
/// OnComplete (on the notifier thread) before the record is stored.
class recording_runtime final : public ICLRIoCompletionManager {
 public:
  HRESULT QueryInterface(const IID& riid, void** ppv) override {
    if (riid == IID_IUnknown || riid == IID_ICLRIoCompletionManager) {
      *ppv = this;
      AddRef();
      return S_OK;
    }
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return refs.fetch_add(1) + 1; }
  ULONG Release() override { return refs.fetch_sub(1) - 1; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    if (hook) hook(error, bytes, ov);
    {
      std::lock_guard lock(mutex);
      seen.push_back({error, bytes, ov});
    }
    cv.notify_all();
    return S_OK;
  }

  /// Waits until at least n completions arrived; false on timeout.
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return seen.size() >= n; });
  }
  std::vector<completion_seen> snapshot() {
    std::lock_guard lock(mutex);
    return seen;
  }
  std::size_t count() {
    std::lock_guard lock(mutex);
    return seen.size();
  }
  /// The completion for ov; fails the test if there is not exactly one.
  completion_seen only(void* ov) {
    std::lock_guard lock(mutex);
    const completion_seen* found = nullptr;
    int n = 0;
    for (const auto& c : seen)
      if (c.overlapped == ov) {
        found = &c;
        ++n;
      }
    REQUIRE(n == 1);
    return *found;
  }

  std::function<void(DWORD, DWORD, void*)> hook;
  std::atomic<ULONG> refs{1};
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<completion_seen> seen;
};

struct release_deleter {
  void operator()(IUnknown* p) const noexcept {
    if (p != nullptr) p->Release();
  }
};
using manager_ptr = std::unique_ptr<IHostIoCompletionManager, release_deleter>;
using host_io_ptr = std::unique_ptr<IIocmHostIo, release_deleter>;

inline iocm_config small_config() {
  iocm_config c;
  iocm_config_init(&c);
  c.pollers = 2;
  c.max_threads = 4;
  return c;
}

inline manager_ptr make_manager(const iocm_config& config) {
  IHostIoCompletionManager* m = nullptr;
  const HRESULT hr = iocm_create_host_io_completion_manager(&config, &m);
  REQUIRE_MESSAGE(hr == S_OK, "iocm_create_host_io_completion_manager failed: 0x"
                                  << std::hex << static_cast<std::uint32_t>(hr));
  return manager_ptr(m);
}

inline host_io_ptr io_of(IHostIoCompletionManager* m) {
  void* p = nullptr;
  REQUIRE(m->QueryInterface(IID_IIocmHostIo, &p) == S_OK);
  return host_io_ptr(static_cast<IIocmHostIo*>(p));
}

/// A ledger's name (tests/support/op_ledger.h): what the test did, and the backend
/// it ran on (the IOCM_BACKEND the test's CTest entry sets).
inline std::string ledger_name(const char* what) {
  const char* backend = std::getenv("IOCM_BACKEND");
  return std::string(what) + " (" + (backend != nullptr ? backend : "auto") + ")";
}

inline HANDLE as_handle(int fd) { return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd)); }

struct host_io2_deleter {
  void operator()(IIocmHostIo2* p) const noexcept { p->Release(); }
};
using host_io2_ptr = std::unique_ptr<IIocmHostIo2, host_io2_deleter>;

/// The engine's IIocmHostIo2 (SetCompletionModes), a reference of its own.
inline host_io2_ptr io2_of(IHostIoCompletionManager* m) {
  void* p = nullptr;
  REQUIRE(m->QueryInterface(IID_IIocmHostIo2, &p) == S_OK);
  return host_io2_ptr(static_cast<IIocmHostIo2*>(p));
}

/// A started engine with a recording runtime, its operations interface and
/// the default port.
struct engine_fixture {
  explicit engine_fixture(const iocm_config& config = small_config())
      : manager(make_manager(config)), io(io_of(manager.get())) {
    REQUIRE(manager->SetCLRIoCompletionManager(&runtime) == S_OK);
    REQUIRE(manager->CreateIoCompletionPort(&port) == S_OK);
  }
  /// Releases the engine: every port closes, everything accepted is
  /// delivered, every thread is joined. After this no OnComplete can come,
  /// so what the runtime has seen is final ("nothing more arrives" checked
  /// without a sleep).
  void settle() {
    io.reset();
    manager.reset();
  }
  test_overlapped* fresh(std::uint64_t tag = 0) {
    auto o = std::make_unique<test_overlapped>();
    o->tag = tag;
    REQUIRE(manager->InitializeHostOverlapped(&o->ov) == S_OK);
    overlappeds.push_back(std::move(o));
    return overlappeds.back().get();
  }

  // Declaration order is destruction order reversed: the engine goes first
  // (closing ports, delivering what is in flight), then the OVERLAPPEDs it
  // may still touch, then the runtime it calls.
  recording_runtime runtime;
  std::vector<std::unique_ptr<test_overlapped>> overlappeds;
  manager_ptr manager;
  host_io_ptr io;
  HANDLE port = nullptr;
};

}  // namespace iocm_test
