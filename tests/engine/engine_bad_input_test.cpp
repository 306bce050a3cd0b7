// Bad input to every entry point is answered with the documented HRESULT,
// never a crash and never a completion.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <thread>

#include "support/engine_fixture.h"

using namespace iocm_test;

namespace {

struct pipe_pair {
  int r = -1, w = -1;
  pipe_pair() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~pipe_pair() {
    ::close(r);
    ::close(w);
  }
};

constexpr HRESULT invalid_handle = HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);

}  // namespace

TEST_CASE("creation: null out-parameter, bad config fields") {
  CHECK(iocm_create_host_io_completion_manager(nullptr, nullptr) == E_POINTER);
  IHostIoCompletionManager* m = reinterpret_cast<IHostIoCompletionManager*>(1);
  iocm_config c;
  iocm_config_init(&c);

  auto refused = [&](auto change) {
    iocm_config bad = c;
    change(bad);
    m = reinterpret_cast<IHostIoCompletionManager*>(1);
    const HRESULT hr = iocm_create_host_io_completion_manager(&bad, &m);
    CHECK(m == nullptr);  // never left dangling
    return hr;
  };
  CHECK(refused([](iocm_config& x) { x.struct_size = 4; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.min_threads = 5, x.max_threads = 4; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.max_threads = 100000; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.ring_entries = 3; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.ring_entries = 0; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.queue_capacity = 100; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.inbox_capacity = 0; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.max_ports = 0; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.ring_setup = 9; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.backend = 3; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.flags = 0x80; }) == E_INVALIDARG);
  CHECK(refused([](iocm_config& x) { x.pollers = 100000; }) == E_INVALIDARG);
}

TEST_CASE("null out-parameters answer E_POINTER") {
  engine_fixture f;
  CHECK(f.manager->CreateIoCompletionPort(nullptr) == E_POINTER);
  CHECK(f.manager->GetMaxThreads(nullptr) == E_POINTER);
  CHECK(f.manager->GetMinThreads(nullptr) == E_POINTER);
  CHECK(f.manager->GetAvailableThreads(nullptr) == E_POINTER);
  CHECK(f.manager->GetHostOverlappedSize(nullptr) == E_POINTER);
  CHECK(f.manager->SetCLRIoCompletionManager(nullptr) == E_POINTER);
  CHECK(f.manager->InitializeHostOverlapped(nullptr) == E_POINTER);
  CHECK(f.manager->QueryInterface(IID_IUnknown, nullptr) == E_POINTER);
  void* p = reinterpret_cast<void*>(1);
  CHECK(f.manager->QueryInterface(IID_ICLRIoCompletionManager, &p) == E_NOINTERFACE);
  CHECK(p == nullptr);
}

TEST_CASE("unknown and closed ports answer E_INVALIDARG") {
  engine_fixture f;
  CHECK(f.manager->CloseIoCompletionPort(nullptr) == E_INVALIDARG);
  CHECK(f.manager->CloseIoCompletionPort(reinterpret_cast<HANDLE>(0x12345678)) == E_INVALIDARG);
  CHECK(f.manager->CloseIoCompletionPort(reinterpret_cast<HANDLE>(-1)) == E_INVALIDARG);
  HANDLE port = nullptr;
  REQUIRE(f.manager->CreateIoCompletionPort(&port) == S_OK);
  REQUIRE(f.manager->CloseIoCompletionPort(port) == S_OK);
  CHECK(f.manager->CloseIoCompletionPort(port) == E_INVALIDARG);  // twice
  pipe_pair p;
  CHECK(f.manager->Bind(port, as_handle(p.r)) == E_INVALIDARG);
  CHECK(f.io->Post(port, 0, 0, &f.fresh()->ov) == E_INVALIDARG);
  // A new port may reuse the slot; the old handle still stays dead.
  HANDLE again = nullptr;
  REQUIRE(f.manager->CreateIoCompletionPort(&again) == S_OK);
  CHECK(again != port);
  CHECK(f.manager->CloseIoCompletionPort(port) == E_INVALIDARG);
  CHECK(f.runtime.count() == 0);
}

TEST_CASE("bind: invalid descriptors, double bind, unbind") {
  engine_fixture f;
  CHECK(f.manager->Bind(f.port, as_handle(-1)) == invalid_handle);
  CHECK(f.manager->Bind(f.port, reinterpret_cast<HANDLE>(-1)) ==
        invalid_handle);  // INVALID_HANDLE_VALUE
  CHECK(f.manager->Bind(f.port, as_handle(1 << 30)) == invalid_handle);
  pipe_pair p;
  const int closed = ::dup(p.r);
  ::close(closed);
  CHECK(f.manager->Bind(f.port, as_handle(closed)) == invalid_handle);
  REQUIRE(f.manager->Bind(f.port, as_handle(p.r)) == S_OK);
  CHECK(f.manager->Bind(f.port, as_handle(p.r)) == HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER));
  CHECK(f.manager->Bind(nullptr, as_handle(p.r)) == HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER));
  CHECK(f.io->Unbind(as_handle(p.r)) == S_OK);
  CHECK(f.io->Unbind(as_handle(p.r)) == invalid_handle);
  CHECK(f.manager->Bind(nullptr, as_handle(p.r)) == S_OK);  // the default port
}

TEST_CASE("thread limits: min > max, zero, and available = max - busy") {
  engine_fixture f;
  DWORD n = 0;
  REQUIRE(f.manager->GetMaxThreads(&n) == S_OK);
  CHECK(n == 4);
  CHECK(f.manager->SetMaxThreads(0) == E_INVALIDARG);
  CHECK(f.manager->SetMinThreads(0) == E_INVALIDARG);
  CHECK(f.manager->SetMinThreads(5) == E_INVALIDARG);  // above max
  REQUIRE(f.manager->SetMinThreads(3) == S_OK);
  CHECK(f.manager->SetMaxThreads(2) == E_INVALIDARG);  // below min
  CHECK(f.manager->SetMaxThreads(1u << 20) == E_INVALIDARG);
  REQUIRE(f.manager->GetMinThreads(&n) == S_OK);
  CHECK(n == 3);
  REQUIRE(f.manager->SetMaxThreads(6) == S_OK);
  REQUIRE(f.manager->GetMaxThreads(&n) == S_OK);
  CHECK(n == 6);
  REQUIRE(f.manager->GetAvailableThreads(&n) == S_OK);
  CHECK(n == 6);
  DWORD size = 0;
  REQUIRE(f.manager->GetHostOverlappedSize(&size) == S_OK);
  CHECK(size == IOCM_HOST_OVERLAPPED_SIZE);
}

TEST_CASE("operations before SetCLRIoCompletionManager are refused") {
  manager_ptr m = make_manager(small_config());
  host_io_ptr io = io_of(m.get());
  pipe_pair p;
  HANDLE port = nullptr;
  REQUIRE(m->CreateIoCompletionPort(&port) == S_OK);
  REQUIRE(m->Bind(port, as_handle(p.r)) == S_OK);
  test_overlapped o;
  REQUIRE(m->InitializeHostOverlapped(&o.ov) == S_OK);
  char buf[8];
  CHECK(io->Read(as_handle(p.r), buf, sizeof buf, &o.ov) == HOST_E_CLRNOTAVAILABLE);
  CHECK(io->Nop(as_handle(p.r), &o.ov) == HOST_E_CLRNOTAVAILABLE);
  CHECK(io->Post(port, 0, 0, &o.ov) == HOST_E_CLRNOTAVAILABLE);
  recording_runtime rt, other;
  REQUIRE(m->SetCLRIoCompletionManager(&rt) == S_OK);
  CHECK(m->SetCLRIoCompletionManager(&rt) == S_OK);  // the same one again is harmless
  CHECK(m->SetCLRIoCompletionManager(&other) == HOST_E_INVALIDOPERATION);
  CHECK(io->Nop(as_handle(p.r), &o.ov) == IOCM_E_IO_PENDING);
  REQUIRE(rt.wait_for(1));
  io.reset();
  m.reset();
  CHECK(rt.refs.load() == 1);  // the engine released its reference
  CHECK(rt.count() == 1);
}

TEST_CASE("operations: unbound handle, null or misaligned or uninitialised OVERLAPPED") {
  engine_fixture f;
  pipe_pair p;
  char buf[8];
  test_overlapped* o = f.fresh();
  CHECK(f.io->Read(as_handle(p.r), buf, sizeof buf, &o->ov) == invalid_handle);  // not bound
  REQUIRE(f.manager->Bind(f.port, as_handle(p.r)) == S_OK);
  CHECK(f.io->Read(as_handle(p.r), buf, sizeof buf, nullptr) == E_POINTER);
  CHECK(f.io->Nop(as_handle(p.r), nullptr) == E_POINTER);
  CHECK(f.io->Post(f.port, 0, 0, nullptr) == E_POINTER);
  CHECK(f.io->Accept(as_handle(p.r), nullptr, &o->ov) == E_POINTER);
  CHECK(f.io->Connect(as_handle(p.r), nullptr, 16, &o->ov) == E_POINTER);
  CHECK(f.io->Connect(as_handle(p.r), buf, 0, &o->ov) == E_INVALIDARG);
  CHECK(f.io->Connect(as_handle(p.r), buf, 129, &o->ov) == E_INVALIDARG);
  alignas(8) unsigned char raw[sizeof(test_overlapped) + 8]{};
  auto* misaligned = reinterpret_cast<OVERLAPPED*>(raw + 4);
  CHECK(f.io->Nop(as_handle(p.r), misaligned) == E_INVALIDARG);
  CHECK(f.manager->InitializeHostOverlapped(misaligned) == E_INVALIDARG);
  // An OVERLAPPED and host area that InitializeHostOverlapped never saw (an
  // iocm::overlapped is constructed ready): zeroes.
  alignas(8) unsigned char never_initialised[sizeof(iocm::overlapped)]{};
  CHECK(f.io->Nop(as_handle(p.r), reinterpret_cast<OVERLAPPED*>(never_initialised)) ==
        HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER));
  CHECK(f.io->Cancel(as_handle(p.w), nullptr) == invalid_handle);  // not bound
  CHECK(f.io->Cancel(as_handle(p.r), &o->ov) == HRESULT_FROM_WIN32(ERROR_NOT_FOUND));
  // Nothing refused ever completes.
  f.settle();
  CHECK(f.runtime.count() == 0);
}

TEST_CASE("an OVERLAPPED still in flight is refused; the first operation completes once") {
  engine_fixture f;
  pipe_pair p;
  REQUIRE(f.manager->Bind(f.port, as_handle(p.r)) == S_OK);
  char buf[8];
  test_overlapped* o = f.fresh();
  REQUIRE(f.io->Read(as_handle(p.r), buf, sizeof buf, &o->ov) ==
          IOCM_E_IO_PENDING);  // waits for data
  CHECK(f.io->Read(as_handle(p.r), buf, sizeof buf, &o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  CHECK(f.io->Nop(as_handle(p.r), &o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  CHECK(f.io->Post(f.port, 0, 0, &o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  CHECK(f.manager->InitializeHostOverlapped(&o->ov) == HRESULT_FROM_WIN32(ERROR_BUSY));
  REQUIRE(::write(p.w, "abc", 3) == 3);
  REQUIRE(f.runtime.wait_for(1));
  f.settle();
  CHECK(f.runtime.count() == 1);
  const auto c = f.runtime.only(&o->ov);
  CHECK(c.error == ERROR_SUCCESS);
  CHECK(c.bytes == 3);
  CHECK(o->ov.Internal == ERROR_SUCCESS);
  CHECK(o->ov.InternalHigh == 3);
}
