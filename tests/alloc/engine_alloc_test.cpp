// The hot path allocates nothing: with malloc and operator new hooked, 1M
// submit -> OnComplete cycles (nops, posts, file reads) after a warm-up make
// zero heap allocations, on any thread. (Not built under sanitizers, whose
// runtimes own malloc.)
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "engine/engine_fixture.h"
#include "iocm/detail/backoff.h"

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
void note() noexcept {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t m) {
  note();
  return __libc_calloc(n, m);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t a, std::size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* memalign(std::size_t a, std::size_t n) {
  note();
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, std::size_t a, std::size_t n) {
  note();
  *out = __libc_memalign(a, n);
  return *out != nullptr ? 0 : ENOMEM;
}
void free(void* p) { __libc_free(p); }
}

void* operator new(std::size_t n) {
  note();
  if (void* p = __libc_malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, std::align_val_t a) {
  note();
  if (void* p = __libc_memalign(static_cast<std::size_t>(a), n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { __libc_free(p); }

using namespace iocm_test;

namespace {

struct counting_runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** ppv) override {
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD error, DWORD, void* ov) override {
    if (error != 0 && error != 7) bad.fetch_add(1, std::memory_order_relaxed);
    static_cast<slot*>(ov)->busy.store(false, std::memory_order_release);
    done.fetch_add(1, std::memory_order_relaxed);
    return S_OK;
  }
  struct slot {
    OVERLAPPED ov{};
    alignas(8) unsigned char host[IOCM_HOST_OVERLAPPED_SIZE]{};
    std::atomic<bool> busy{false};
  };
  std::atomic<std::uint64_t> done{0}, bad{0};
};

}  // namespace

TEST_CASE("1M submit -> OnComplete cycles after warm-up make 0 heap allocations") {
  counting_runtime rt;
  iocm_config c = small_config();
  manager_ptr m = make_manager(c);
  host_io_ptr io = io_of(m.get());
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  char path[] = "/tmp/iocm-alloc-XXXXXX";
  const int file = ::mkostemp(path, O_CLOEXEC);
  REQUIRE(file >= 0);
  ::unlink(path);
  std::vector<char> content(1 << 16, 'x');
  REQUIRE(::pwrite(file, content.data(), content.size(), 0) ==
          static_cast<ssize_t>(content.size()));
  REQUIRE(m->Bind(port, as_handle(file)) == S_OK);

  constexpr int window = 64;
  std::vector<counting_runtime::slot> slots(window);
  std::vector<char> buffers(window * 64);
  for (auto& s : slots) REQUIRE(m->InitializeHostOverlapped(&s.ov) == S_OK);

  auto run = [&](std::uint64_t cycles) {
    std::uint64_t refused = 0;
    for (std::uint64_t i = 0; i < cycles; ++i) {
      auto& s = slots[i % window];
      for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
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
          s.ov.DUMMYUNIONNAME.DUMMYSTRUCTNAME.Offset =
              static_cast<DWORD>((i * 64) % content.size());
          hr = io->Read(as_handle(file), &buffers[(i % window) * 64], 64, &s.ov);
          break;
      }
      if (hr != IOCM_E_IO_PENDING) {
        ++refused;
        s.busy.store(false);
      }
    }
    for (auto& s : slots)
      for (iocm::detail::backoff b; s.busy.load(std::memory_order_acquire);) b.pause();
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
  io.reset();
  m.reset();
  ::close(file);
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
