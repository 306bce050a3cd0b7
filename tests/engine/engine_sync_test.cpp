// IIocmHostIo2::SetCompletionModes with IOCM_SKIP_COMPLETION_ON_SUCCESS,
// iocm's FILE_SKIP_COMPLETION_PORT_ON_SUCCESS (docs/ENGINE.md): a transfer
// the kernel finishes at once answers on the calling thread, and no
// OnComplete follows; one that would wait goes to the poller as before.
// Each case runs on both backends (CTest runs the program with
// IOCM_BACKEND=uring and =epoll).
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm_test;

namespace {

constexpr HRESULT invalid_handle = HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE);

}  // namespace

TEST_CASE("IIocmHostIo2 is the same object as IIocmHostIo; bad handles and modes are refused") {
  engine_fixture f;
  auto io2 = io2_of(f.manager.get());
  CHECK(static_cast<IIocmHostIo*>(io2.get()) == f.io.get());
  socket_pair p;
  CHECK(io2->SetCompletionModes(as_handle(p.a.fd), IOCM_SKIP_COMPLETION_ON_SUCCESS) ==
        invalid_handle);  // not bound
  REQUIRE(f.manager->Bind(f.port, as_handle(p.a.fd)) == S_OK);
  CHECK(io2->SetCompletionModes(as_handle(p.a.fd), 8) == E_INVALIDARG);
  CHECK(io2->SetCompletionModes(as_handle(p.a.fd), IOCM_SKIP_COMPLETION_ON_SUCCESS) == S_OK);
  REQUIRE(f.io->Unbind(as_handle(p.a.fd)) == S_OK);
  CHECK(io2->SetCompletionModes(as_handle(p.a.fd), 0) == invalid_handle);
}

TEST_CASE("sockets: data already there answers S_OK with no OnComplete; none yet, one later") {
  engine_fixture f;
  auto io2 = io2_of(f.manager.get());
  socket_pair p;
  REQUIRE(f.manager->Bind(f.port, as_handle(p.a.fd)) == S_OK);
  char buffer[16] = {};
  const char hello[] = "hello";

  // Off (the default): pending, then OnComplete.
  REQUIRE(::send(p.b.fd, hello, 5, 0) == 5);
  test_overlapped* off = f.fresh(1);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &off->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(1));

  REQUIRE(io2->SetCompletionModes(as_handle(p.a.fd), IOCM_SKIP_COMPLETION_ON_SUCCESS) == S_OK);
  // Data there: at once.
  REQUIRE(::send(p.b.fd, hello, 5, 0) == 5);
  test_overlapped* now = f.fresh(2);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &now->ov) == S_OK);
  CHECK(now->ov.InternalHigh == 5);
  CHECK(now->ov.Internal == 0);
  CHECK(std::memcmp(buffer, hello, 5) == 0);
  // The same OVERLAPPED again at once: it is free.
  test_overlapped* sent = f.fresh(3);
  CHECK(f.io->Send(as_handle(p.a.fd), hello, 5, &sent->ov) == S_OK);
  CHECK(sent->ov.InternalHigh == 5);
  char peer[16];
  CHECK(::recv(p.b.fd, peer, sizeof peer, 0) == 5);
  // Nothing there yet: pending, and one OnComplete once it comes.
  test_overlapped* later = f.fresh(4);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &later->ov) == IOCM_E_IO_PENDING);
  REQUIRE(::send(p.b.fd, hello, 3, 0) == 3);
  REQUIRE(f.runtime.wait_for(2));
  // The peer closes: an orderly close is success with 0 bytes, at once.
  ::shutdown(p.b.fd, SHUT_WR);
  test_overlapped* closed = f.fresh(5);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &closed->ov) == S_OK);
  CHECK(closed->ov.InternalHigh == 0);
  io2.reset();  // its reference too, so that settle() ends the engine
  f.settle();
  CHECK(f.runtime.count() == 2);
  CHECK(f.runtime.only(&off->ov).bytes == 5);
  CHECK(f.runtime.only(&later->ov).bytes == 3);
}

TEST_CASE("files: a cached read answers S_OK at once, end of file its error, and nothing follows") {
  engine_fixture f;
  auto io2 = io2_of(f.manager.get());
  fd_guard file(temp_file());
  const std::string text(8192, 'z');
  REQUIRE(::pwrite(file.fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size()));
  REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);
  REQUIRE(io2->SetCompletionModes(as_handle(file.fd), IOCM_SKIP_COMPLETION_ON_SUCCESS) == S_OK);
  std::vector<char> buffer(4096);
  test_overlapped* o = f.fresh(1);
  set_offset(o->ov, 4096);
  CHECK(f.io->Read(as_handle(file.fd), buffer.data(), 4096, &o->ov) == S_OK);
  CHECK(o->ov.InternalHigh == 4096);
  CHECK(buffer[0] == 'z');
  set_offset(o->ov, 8192);
  CHECK(f.io->Read(as_handle(file.fd), buffer.data(), 4096, &o->ov) ==
        HRESULT_FROM_WIN32(ERROR_HANDLE_EOF));
  CHECK(o->ov.Internal == ERROR_HANDLE_EOF);
  // A write may finish at once or go to the poller (buffered writes say
  // EAGAIN to RWF_NOWAIT on some file systems): either way, exactly once.
  test_overlapped* w = f.fresh(2);
  set_offset(w->ov, 0);
  const HRESULT hr = f.io->Write(as_handle(file.fd), text.data(), 100, &w->ov);
  REQUIRE((hr == S_OK || hr == IOCM_E_IO_PENDING));
  INFO("write answered 0x" << std::hex << static_cast<unsigned>(hr));
  io2.reset();  // its reference too, so that settle() ends the engine
  f.settle();
  CHECK(f.runtime.count() == (hr == S_OK ? 0u : 1u));
}

TEST_CASE("an OVERLAPPED in flight is refused at once too; a closed port's handle is refused") {
  engine_fixture f;
  auto io2 = io2_of(f.manager.get());
  socket_pair p;
  REQUIRE(f.manager->Bind(f.port, as_handle(p.a.fd)) == S_OK);
  REQUIRE(io2->SetCompletionModes(as_handle(p.a.fd), IOCM_SKIP_COMPLETION_ON_SUCCESS) == S_OK);
  char buffer[8];
  test_overlapped* o = f.fresh(1);
  REQUIRE(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &o->ov) == IOCM_E_IO_PENDING);
  REQUIRE(::send(p.b.fd, "ab", 2, 0) == 2);
  REQUIRE(f.runtime.wait_for(1));
  REQUIRE(::send(p.b.fd, "cd", 2, 0) == 2);
  test_overlapped* busy = f.fresh(2);
  // In flight (a receive that waits): a second use is refused.
  REQUIRE(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &busy->ov) == S_OK);
  test_overlapped* waiting = f.fresh(3);
  REQUIRE(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &waiting->ov) == IOCM_E_IO_PENDING);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &waiting->ov) ==
        HRESULT_FROM_WIN32(ERROR_BUSY));
  REQUIRE(f.manager->CloseIoCompletionPort(f.port) == S_OK);
  CHECK(f.io->Recv(as_handle(p.a.fd), buffer, sizeof buffer, &busy->ov) == invalid_handle);
  io2.reset();  // its reference too, so that settle() ends the engine
  f.settle();
  CHECK(f.runtime.only(&waiting->ov).error == ERROR_OPERATION_ABORTED);
  CHECK(f.runtime.count() == 2);
}
