// The hot path allocates nothing: with malloc and operator new hooked, 1M
// submit -> OnComplete cycles (nops, posts, file reads) after a warm-up make
// zero heap allocations, on any thread. (Not built under sanitizers, whose
// runtimes own malloc.)
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <vector>

#include "engine_core.h"
#include "iocm/detail/backoff.h"
#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<std::uint64_t> allocations{0};
// Failure injection: while fail_at > 0, the fail_at-th allocation (counted
// from when it was set, on any thread) fails. live counts blocks allocated
// and not yet freed, from the start of the program.
std::atomic<long> fail_at{0}, calls_since{0}, live{0};
/// Counts an allocation; false when this one must fail.
bool note() noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  const long at = fail_at.load(std::memory_order_relaxed);
  return at == 0 || calls_since.fetch_add(1, std::memory_order_relaxed) + 1 != at;
}
void* track(void* p) noexcept {
  if (p != nullptr) live.fetch_add(1, std::memory_order_relaxed);
  return p;
}
void* refuse() noexcept {
  errno = ENOMEM;
  return nullptr;
}
}  // namespace

extern "C" {
void* malloc(std::size_t n) { return note() ? track(__libc_malloc(n)) : refuse(); }
void* calloc(std::size_t n, std::size_t m) {
  return note() ? track(__libc_calloc(n, m)) : refuse();
}
void* realloc(void* p, std::size_t n) {
  if (!note()) return refuse();
  void* q = __libc_realloc(p, n);
  if (p == nullptr) return track(q);
  if (n == 0 && q == nullptr) live.fetch_sub(1, std::memory_order_relaxed);  // freed
  return q;
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  return note() ? track(__libc_memalign(a, n)) : refuse();
}
void* memalign(std::size_t a, std::size_t n) {
  return note() ? track(__libc_memalign(a, n)) : refuse();
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  if (!note()) return ENOMEM;
  *out = track(__libc_memalign(a, n));
  return *out != nullptr ? 0 : ENOMEM;
}
void free(void* p) {
  if (p != nullptr) live.fetch_sub(1, std::memory_order_relaxed);
  __libc_free(p);
}
}

void* operator new(std::size_t n) {
  if (note())
    if (void* p = track(__libc_malloc(n == 0 ? 1 : n))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (note())
    if (void* p = track(__libc_memalign(static_cast<std::size_t>(a), n == 0 ? 1 : n))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, std::size_t) noexcept { free(p); }
void operator delete[](void* p, std::size_t) noexcept { free(p); }
void operator delete(void* p, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { free(p); }

using namespace iocm_test;

namespace {

/// A runtime that lives as long as its test (reference counting is a
/// formality); each test's runtime adds OnComplete.
struct runtime_stub : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** ppv) override {
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
};

struct counting_runtime final : runtime_stub {
  HRESULT OnComplete(DWORD error, DWORD, void* ov) override {
    if (error != 0 && error != 7) bad.fetch_add(1, std::memory_order_relaxed);
    holder_of<slot>(ov)->busy.store(false, std::memory_order_release);
    done.fetch_add(1, std::memory_order_relaxed);
    return S_OK;
  }
  struct slot : iocm::overlapped {
    std::atomic<bool> busy{false};
  };
  std::atomic<std::uint64_t> done{0}, bad{0};
};

constexpr std::size_t file_bytes = 1 << 16;

/// A temporary file of file_bytes bytes, just written (so page-cached),
/// bound to port; its descriptor.
int bound_file(IHostIoCompletionManager& m, HANDLE port) {
  char path[] = "/tmp/iocm-alloc-XXXXXX";
  const int file = ::mkostemp(path, O_CLOEXEC);
  REQUIRE(file >= 0);
  ::unlink(path);
  const std::vector<char> content(file_bytes, 'x');
  REQUIRE(::pwrite(file, content.data(), content.size(), 0) ==
          static_cast<ssize_t>(content.size()));
  REQUIRE(m.Bind(port, as_handle(file)) == S_OK);
  return file;
}

}  // namespace

TEST_CASE(
    "1M submit -> OnComplete cycles after warm-up make 0 heap allocations, threaded "
    "and pumped") {
  for (const bool pumped : {false, true}) {
    CAPTURE(pumped);
    counting_runtime rt;
    iocm_config c = small_config();
    if (pumped) {
      c.pollers = 1;
      c.flags = IOCM_PUMPED;
    }
    manager_ptr m = make_manager(c);
    host_io_ptr io = io_of(m.get());
    REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
    IIocmPump* pump = nullptr;
    if (pumped) {
      void* p = nullptr;
      REQUIRE(m->QueryInterface(IID_IIocmPump, &p) == S_OK);
      pump = static_cast<IIocmPump*>(p);
    }
    // Until s is free: a pumped engine delivers on this thread, in Pump.
    auto wait_free = [&](counting_runtime::slot& s) {
      for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) {
        if (pump != nullptr)
          (void)pump->Pump(0, nullptr);
        else
          b.pause();
      }
    };
    HANDLE port = nullptr;
    REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
    const int file = bound_file(*m, port);

    constexpr int window = 64;
    std::vector<counting_runtime::slot> slots(window);
    std::vector<char> buffers(window * 64);
    for (auto& s : slots) REQUIRE(m->InitializeHostOverlapped(&s.ov) == S_OK);

    auto run = [&](std::uint64_t cycles) {
      std::uint64_t refused = 0;
      for (std::uint64_t i = 0; i < cycles; ++i) {
        auto& s = slots[i % window];
        wait_free(s);
        s.busy.store(true, std::memory_order_relaxed);
        HRESULT hr;
        switch (i % 3) {
          case 0:
            hr = io->Nop(as_handle(file), &s.ov);
            break;
          case 1:
            hr = io->Post(port, 7, 1, &s.ov);
            break;
          default:
            s.ov.Offset = static_cast<DWORD>((i * 64) % file_bytes);
            hr = io->Read(as_handle(file), &buffers[(i % window) * 64], 64, &s.ov);
            break;
        }
        if (hr != IOCM_E_IO_PENDING) {
          ++refused;
          s.busy.store(false);
        }
      }
      for (auto& s : slots) wait_free(s);
      return refused;
    };

    REQUIRE(run(20000) == 0);  // warm-up: threads' first use of TLS, io-wq workers, lazy paths
    const std::uint64_t before = rt.done.load();
    allocations.store(0);
    counting.store(true);
    const std::uint64_t refused = run(1000000);
    counting.store(false);
    CHECK(refused == 0);
    CHECK(rt.done.load() - before == 1000000);
    CHECK(rt.bad.load() == 0);
    CHECK(allocations.load() == 0);
    if (pump != nullptr) pump->Release();
    io.reset();
    m.reset();
    ::close(file);
  }
}

TEST_CASE(
    "1M reads, each submitted from the last one's OnComplete (straight into the poller's ring), "
    "make 0 heap allocations after warm-up") {
  // A continuation: what a runtime's async code mostly does. The poller's
  // thread delivers each read and takes the next straight into its ring.
  struct chain_runtime final : runtime_stub {
    HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
      if (error != 0 || bytes != 64) bad.fetch_add(1, std::memory_order_relaxed);
      const std::uint64_t n = done.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n >= until.load(std::memory_order_acquire)) {
        idle.store(true, std::memory_order_release);
        return S_OK;
      }
      auto* o = static_cast<OVERLAPPED*>(ov);
      o->Offset = static_cast<DWORD>((n * 64) % file_bytes);
      if (io->Read(file, buffer, 64, o) != IOCM_E_IO_PENDING) {
        bad.fetch_add(1, std::memory_order_relaxed);
        idle.store(true, std::memory_order_release);
      }
      return S_OK;
    }
    IIocmHostIo* io = nullptr;
    HANDLE file = nullptr;
    char buffer[64];
    std::atomic<std::uint64_t> done{0}, bad{0}, until{0};
    std::atomic<bool> idle{true};
  };
  chain_runtime rt;
  manager_ptr m = make_manager(small_config());
  host_io_ptr io = io_of(m.get());
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  const int file = bound_file(*m, port);
  rt.io = io.get();
  rt.file = as_handle(file);
  iocm::overlapped o;
  auto run = [&](std::uint64_t cycles) {
    rt.until.store(rt.done.load() + cycles);
    rt.idle.store(false);
    o.set_offset(0);
    REQUIRE(io->Read(rt.file, rt.buffer, 64, &o.ov) == IOCM_E_IO_PENDING);
    for (iocm::detail::backoff b; !rt.idle.load(std::memory_order_acquire);) b.pause();
  };
  run(20000);  // warm-up
  const std::uint64_t before = rt.done.load();
  allocations.store(0);
  counting.store(true);
  run(1000000);
  counting.store(false);
  CHECK(rt.done.load() - before == 1000000);
  CHECK(rt.bad.load() == 0);
  CHECK(allocations.load() == 0);
  io.reset();
  m.reset();
  ::close(file);
}

TEST_CASE(
    "200k TCP round trips with both sockets receiving ahead (multishot receive into the poller's "
    "buffers) make 0 heap allocations after warm-up") {
  // Client: send 64 bytes, receive them back; server: receive 64, send
  // them back. Every next step is issued from the last one's OnComplete.
  struct echo_chain final : runtime_stub {
    struct op : iocm::overlapped {
      int step = 0;  // 0 client send, 1 client recv, 2 server recv, 3 server send
      DWORD done = 0;
    };
    HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
      op& o = *holder_of<op>(ov);
      if (error != 0 || bytes == 0) {
        if (!(o.step == 2 && closing.load())) bad.fetch_add(1, std::memory_order_relaxed);
        return S_OK;
      }
      o.done += bytes;
      if (o.done < 64) {
        issue(o);  // partial: the rest first
        return S_OK;
      }
      o.done = 0;
      switch (o.step) {
        case 0:
          issue(ops[1]);
          break;
        case 1:
          if (trips.fetch_add(1, std::memory_order_relaxed) + 1 >= until.load())
            idle.store(true, std::memory_order_release);
          else
            issue(ops[0]);
          break;
        case 2:
          issue(ops[3]);
          break;
        default:
          issue(ops[2]);
          break;
      }
      return S_OK;
    }
    void issue(op& o) {
      const bool client = o.step < 2;
      char* at = (client ? client_buffer : server_buffer) + o.done;
      const HANDLE h = client ? client_socket : server_socket;
      const HRESULT hr = o.step == 0 || o.step == 3 ? io->Send(h, at, 64 - o.done, &o.ov)
                                                    : io->Recv(h, at, 64 - o.done, &o.ov);
      if (hr != IOCM_E_IO_PENDING) {
        bad.fetch_add(1, std::memory_order_relaxed);
        idle.store(true, std::memory_order_release);
      }
    }
    IIocmHostIo* io = nullptr;
    HANDLE client_socket = nullptr, server_socket = nullptr;
    op ops[4];
    char client_buffer[64] = {}, server_buffer[64] = {};
    std::atomic<std::uint64_t> trips{0}, bad{0}, until{0};
    std::atomic<bool> idle{true}, closing{false};
  };
  echo_chain rt;
  manager_ptr m = make_manager(small_config());
  host_io_ptr io = io_of(m.get());
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  fd_guard client, server;
  connected_pair(client, server);
  void* p = nullptr;
  REQUIRE(m->QueryInterface(IID_IIocmHostIo2, &p) == S_OK);
  auto* io2 = static_cast<IIocmHostIo2*>(p);
  for (const int fd : {client.fd, server.fd}) {
    REQUIRE(m->Bind(port, as_handle(fd)) == S_OK);
    REQUIRE(io2->SetCompletionModes(as_handle(fd), IOCM_RECEIVE_AHEAD) == S_OK);
  }
  io2->Release();
  rt.io = io.get();
  rt.client_socket = as_handle(client.fd);
  rt.server_socket = as_handle(server.fd);
  for (int i = 0; i < 4; ++i) {
    rt.ops[i].step = i;
    REQUIRE(m->InitializeHostOverlapped(&rt.ops[i].ov) == S_OK);
  }
  rt.issue(rt.ops[2]);
  auto run = [&](std::uint64_t trips) {
    rt.until.store(rt.trips.load() + trips);
    rt.idle.store(false);
    rt.issue(rt.ops[0]);
    for (iocm::detail::backoff b; !rt.idle.load(std::memory_order_acquire);) b.pause();
  };
  run(20000);  // warm-up: the poller's buffers are made at its first receive ahead
  const std::uint64_t before = rt.trips.load();
  allocations.store(0);
  counting.store(true);
  run(200000);
  counting.store(false);
  CHECK(rt.trips.load() - before == 200000);
  CHECK(rt.bad.load() == 0);
  CHECK(allocations.load() == 0);
  rt.closing.store(true);
  io.reset();
  m.reset();
}

TEST_CASE("the hooks see allocations (the test above could fail)") {
  allocations.store(0);
  counting.store(true);
  auto* p = new std::vector<int>(100);
  void* q = std::malloc(10);
  counting.store(false);
  delete p;
  std::free(q);
  CHECK(allocations.load() >= 3);
}

TEST_CASE(
    "start-up with the Nth allocation failing: a clean HRESULT and no leak, for every N, "
    "threaded and pumped") {
  // The engine's own start-up (engine_core::create: queue shards, pollers
  // and their rings, notifiers, threads), after prepare_setup() has read the
  // config and the topology. hwloc's topology discovery is left out: after
  // one failed allocation there, hwloc 2.9 trips an assertion of its own in
  // the next discovery (components.c, hwloc_components_init).
  for (const bool pumped : {false, true}) {
    CAPTURE(pumped);
    iocm::detail::engine_setup setup;
    std::string why;
    iocm_config c = small_config();
    if (pumped) {  // its own start: the poller set up inline, the pump's token
      c.pollers = 1;
      c.flags = IOCM_PUMPED;
    }
    REQUIRE(iocm::detail::prepare_setup(&c, setup, why) == S_OK);
    auto start_and_stop = [&](HRESULT& hr) {
      hr = S_OK;
      auto core = iocm::detail::engine_core::create(setup, &hr);
      if (core) {
        hr = S_OK;
        HANDLE port = nullptr;
        (void)core->create_port(&port);
      }
    };
    HRESULT hr;
    start_and_stop(hr);  // warm-up: the runtime's own first-use allocations
    REQUIRE(hr == S_OK);
    int failures = 0, n = 1;
    for (;; ++n) {  // every allocation of start-up, each failed in turn
      const long before = live.load();
      calls_since.store(0);
      fail_at.store(n);
      start_and_stop(hr);
      fail_at.store(0);
      const long after = live.load();  // before the checks below allocate anything
      const long calls = calls_since.load();
      if (hr == S_OK && calls < n) break;  // start-up needed fewer allocations than n
      if (FAILED(hr)) {
        ++failures;
        CHECK_MESSAGE(hr == E_OUTOFMEMORY, "allocation ", n, " failing gave 0x", std::hex,
                      static_cast<std::uint32_t>(hr));
      }
      CHECK_MESSAGE(after == before, "allocation ", n, " failing leaked ", after - before,
                    " blocks");
      REQUIRE(n < 10000);
    }
    MESSAGE("start-up makes about " << n << " allocations; " << failures
                                    << " injected failures made it fail");
    CHECK(failures > 0);
  }
}

TEST_CASE(
    "accepting, binding and serving new connections after warm-up makes 0 heap allocations "
    "(descriptor numbers keep growing)") {
  counting_runtime rt;
  manager_ptr m = make_manager(small_config());
  host_io_ptr io = io_of(m.get());
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  tcp_listener listener;
  REQUIRE(::listen(listener.fd.fd, 512) == 0);
  REQUIRE(m->Bind(port, as_handle(listener.fd.fd)) == S_OK);
  counting_runtime::slot op;
  REQUIRE(m->InitializeHostOverlapped(&op.ov) == S_OK);
  auto wait_free = [&] {
    for (iocm::detail::backoff b; op.busy.load(std::memory_order_acquire);) b.pause();
  };
  auto submit = [&](HRESULT hr) {
    if (hr == IOCM_E_IO_PENDING) return true;
    op.busy.store(false);
    return false;
  };
  // Every connection stays open, so each new one gets a higher number (all
  // below 1024, whose tables a first Bind in that range makes).
  std::vector<int> open;
  open.reserve(2048);
  std::uint64_t refused = 0;
  auto serve = [&](int connections) {
    for (int i = 0; i < connections; ++i) {
      const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (client < 0 || ::connect(client, reinterpret_cast<const sockaddr*>(&listener.addr),
                                  sizeof listener.addr) != 0) {
        ++refused;
        return;
      }
      HANDLE accepted = nullptr;
      op.busy.store(true);
      if (!submit(io->Accept(as_handle(listener.fd.fd), &accepted, &op.ov))) ++refused;
      wait_free();
      const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(accepted));
      if (m->Bind(port, accepted) != S_OK) ++refused;
      char byte = 0;
      op.busy.store(true);
      if (!submit(io->Recv(accepted, &byte, 1, &op.ov))) ++refused;
      if (::write(client, "q", 1) != 1) ++refused;
      wait_free();
      op.busy.store(true);
      if (!submit(io->Send(accepted, "a", 1, &op.ov))) ++refused;
      wait_free();
      if (::read(client, &byte, 1) != 1) ++refused;
      open.push_back(client);
      open.push_back(fd);
    }
  };
  serve(8);  // warm-up: the first binding's tables, the threads' first use
  REQUIRE(refused == 0);
  allocations.store(0);
  counting.store(true);
  serve(400);
  counting.store(false);
  CHECK(refused == 0);
  CHECK(rt.bad.load() == 0);
  CHECK(rt.done.load() == 3 * 408);
  CHECK(allocations.load() == 0);
  for (std::size_t i = 1; i < open.size(); i += 2) REQUIRE(io->Unbind(as_handle(open[i])) == S_OK);
  for (const int fd : open) ::close(fd);
  io.reset();
  m.reset();
}
