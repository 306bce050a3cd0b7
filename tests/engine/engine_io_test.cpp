// Operations against real kernel objects: files (offsets, short reads, end of
// file), pipes, and TCP over loopback (accept, connect, send, recv, orderly
// close, reset, refused). Each ring setup level is exercised.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <string>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm_test;

TEST_CASE(
    "files: offset 0xFFFFFFFF:0xFFFFFFFF writes at the end of the file, as on Windows; other "
    "offsets past 2^63 are refused; the descriptor's own position is never used or moved") {
  engine_fixture f;
  fd_guard file(temp_file());
  REQUIRE(::pwrite(file.fd, "abcdef", 6, 0) == 6);
  REQUIRE(::lseek(file.fd, 2, SEEK_SET) == 2);  // where a position-based write would land
  REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);
  const HRESULT invalid = HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER);
  for (const char* piece : {"XYZ", "123"}) {
    test_overlapped* append = f.fresh();
    set_offset(append->ov, ~std::uint64_t{0});
    const std::size_t before = f.runtime.count();
    REQUIRE(f.io->Write(as_handle(file.fd), piece, 3, &append->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(before + 1));
    CHECK(f.runtime.only(&append->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&append->ov).bytes == 3);
  }
  char all[16] = {};
  REQUIRE(::pread(file.fd, all, sizeof all, 0) == 12);
  CHECK(std::string(all, 12) == "abcdefXYZ123");
  CHECK(::lseek(file.fd, 0, SEEK_CUR) == 2);
  // A read has no "end of file" offset; nor has either operation any other
  // offset with the top bit set (negative as a Linux offset).
  char buf[4];
  test_overlapped* o = f.fresh();
  for (const std::uint64_t offset :
       {~std::uint64_t{0}, ~std::uint64_t{0} - 1, std::uint64_t{1} << 63}) {
    CAPTURE(offset);
    set_offset(o->ov, offset);
    CHECK(f.io->Read(as_handle(file.fd), buf, sizeof buf, &o->ov) == invalid);
    if (offset != ~std::uint64_t{0})
      CHECK(f.io->Write(as_handle(file.fd), "no", 2, &o->ov) == invalid);
  }
  f.io.reset();
  f.manager.reset();  // everything accepted has completed; nothing refused did
  CHECK(f.runtime.count() == 2);
  CHECK(::lseek(file.fd, 0, SEEK_CUR) == 2);
}

TEST_CASE("files: offsets (above 4 GiB too), short reads, end of file") {
  for (std::uint32_t setup :
       {IOCM_RING_PROBE, IOCM_RING_DEFER_TASKRUN, IOCM_RING_COOP_TASKRUN, IOCM_RING_PLAIN}) {
    CAPTURE(setup);
    iocm_config c = small_config();
    c.ring_setup = setup;
    engine_fixture f(c);
    fd_guard file(temp_file());
    std::string content(10000, '\0');
    for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>('a' + i % 26);
    REQUIRE(::pwrite(file.fd, content.data(), content.size(), 0) == 10000);
    REQUIRE(f.manager->Bind(f.port, as_handle(file.fd)) == S_OK);

    char buf[200];
    test_overlapped* mid = f.fresh();
    set_offset(mid->ov, 4096);
    REQUIRE(f.io->Read(as_handle(file.fd), buf, 100, &mid->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(1));
    CHECK(f.runtime.only(&mid->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&mid->ov).bytes == 100);
    CHECK(std::memcmp(buf, content.data() + 4096, 100) == 0);

    char tail_buf[200];
    test_overlapped* tail = f.fresh();
    set_offset(tail->ov, 9950);
    REQUIRE(f.io->Read(as_handle(file.fd), tail_buf, 200, &tail->ov) == IOCM_E_IO_PENDING);
    char eof_buf[16];
    test_overlapped* eof = f.fresh();
    set_offset(eof->ov, 10000);
    REQUIRE(f.io->Read(as_handle(file.fd), eof_buf, sizeof eof_buf, &eof->ov) == IOCM_E_IO_PENDING);
    test_overlapped* far = f.fresh();
    set_offset(far->ov, (std::uint64_t{1} << 32) + 5);
    REQUIRE(f.io->Read(as_handle(file.fd), eof_buf, sizeof eof_buf, &far->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(4));
    CHECK(f.runtime.only(&tail->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&tail->ov).bytes == 50);  // short read
    CHECK(std::memcmp(tail_buf, content.data() + 9950, 50) == 0);
    CHECK(f.runtime.only(&eof->ov).error == ERROR_HANDLE_EOF);
    CHECK(f.runtime.only(&eof->ov).bytes == 0);
    CHECK(f.runtime.only(&far->ov).error == ERROR_HANDLE_EOF);

    // A write above 4 GiB lands exactly there (OffsetHigh is honoured).
    const char msg[] = "offset-high";
    test_overlapped* w = f.fresh();
    const std::uint64_t at = (std::uint64_t{1} << 32) + 123;
    set_offset(w->ov, at);
    REQUIRE(f.io->Write(as_handle(file.fd), msg, sizeof msg, &w->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(5));
    CHECK(f.runtime.only(&w->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&w->ov).bytes == sizeof msg);
    char back[sizeof msg]{};
    REQUIRE(::pread(file.fd, back, sizeof back, static_cast<off_t>(at)) == sizeof back);
    CHECK(std::memcmp(back, msg, sizeof msg) == 0);

    // A zero-length read is not end of file.
    test_overlapped* zero = f.fresh();
    REQUIRE(f.io->Read(as_handle(file.fd), buf, 0, &zero->ov) == IOCM_E_IO_PENDING);
    REQUIRE(f.runtime.wait_for(6));
    CHECK(f.runtime.only(&zero->ov).error == ERROR_SUCCESS);
    CHECK(f.runtime.only(&zero->ov).bytes == 0);
    CHECK(f.runtime.count() == 6);
  }
}

TEST_CASE("files: writing through a read-only descriptor completes with ERROR_INVALID_HANDLE") {
  engine_fixture f;
  fd_guard ro(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  REQUIRE(ro.fd >= 0);
  REQUIRE(f.manager->Bind(f.port, as_handle(ro.fd)) == S_OK);
  test_overlapped* w = f.fresh();
  REQUIRE(f.io->Write(as_handle(ro.fd), "x", 1, &w->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(1));
  // write(2) on a read-only descriptor is EBADF: the table says ERROR_INVALID_HANDLE.
  CHECK(f.runtime.only(&w->ov).error == ERROR_INVALID_HANDLE);
  CHECK(w->ov.Internal == ERROR_INVALID_HANDLE);
}

TEST_CASE("pipes: data, writers gone -> ERROR_BROKEN_PIPE, readers gone -> ERROR_BROKEN_PIPE") {
  engine_fixture f;
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  fd_guard r(fds[0]), w(fds[1]);
  REQUIRE(f.manager->Bind(f.port, as_handle(r.fd)) == S_OK);
  REQUIRE(f.manager->Bind(f.port, as_handle(w.fd)) == S_OK);

  char buf[64];
  test_overlapped* rd = f.fresh();
  REQUIRE(f.io->Read(as_handle(r.fd), buf, sizeof buf, &rd->ov) == IOCM_E_IO_PENDING);
  test_overlapped* wr = f.fresh();
  REQUIRE(f.io->Write(as_handle(w.fd), "through", 7, &wr->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(f.runtime.only(&rd->ov).bytes == 7);
  CHECK(std::memcmp(buf, "through", 7) == 0);
  CHECK(f.runtime.only(&wr->ov).bytes == 7);

  // Reuse the same OVERLAPPED after its completion: no re-initialisation needed.
  REQUIRE(f.io->Read(as_handle(r.fd), buf, sizeof buf, &rd->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.io->Unbind(as_handle(w.fd)) == S_OK);
  w.reset();  // the last writer goes away
  REQUIRE(f.runtime.wait_for(3));
  const auto snap = f.runtime.snapshot();
  CHECK(snap.back().overlapped == &rd->ov);
  CHECK(snap.back().error == ERROR_BROKEN_PIPE);
  CHECK(snap.back().bytes == 0);

  // The other direction: writing with no reader left fails, and does not
  // kill the process with SIGPIPE.
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  fd_guard r2(fds[0]), w2(fds[1]);
  REQUIRE(f.manager->Bind(f.port, as_handle(w2.fd)) == S_OK);
  r2.reset();
  test_overlapped* lone = f.fresh();
  REQUIRE(f.io->Write(as_handle(w2.fd), "x", 1, &lone->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(4));
  CHECK(f.runtime.only(&lone->ov).error == ERROR_BROKEN_PIPE);
}

TEST_CASE("tcp: accept, connect, send, recv, orderly close, reset, refused") {
  engine_fixture f;
  tcp_listener l;
  REQUIRE(f.manager->Bind(f.port, as_handle(l.fd.fd)) == S_OK);
  HANDLE accepted = nullptr;
  test_overlapped* acc = f.fresh();
  REQUIRE(f.io->Accept(as_handle(l.fd.fd), &accepted, &acc->ov) == IOCM_E_IO_PENDING);

  fd_guard client(tcp_socket());
  REQUIRE(f.manager->Bind(f.port, as_handle(client.fd)) == S_OK);
  test_overlapped* con = f.fresh();
  REQUIRE(f.io->Connect(as_handle(client.fd), &l.addr, sizeof l.addr, &con->ov) ==
          IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(f.runtime.only(&con->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&acc->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&acc->ov).bytes == 0);
  fd_guard server(static_cast<int>(reinterpret_cast<std::intptr_t>(accepted)));
  REQUIRE(server.fd > 2);
  REQUIRE(f.manager->Bind(f.port, as_handle(server.fd)) == S_OK);

  char in[64]{};
  test_overlapped* rcv = f.fresh();
  REQUIRE(f.io->Recv(as_handle(server.fd), in, sizeof in, &rcv->ov) == IOCM_E_IO_PENDING);
  test_overlapped* snd = f.fresh();
  REQUIRE(f.io->Send(as_handle(client.fd), "hello", 5, &snd->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(4));
  CHECK(f.runtime.only(&snd->ov).bytes == 5);
  CHECK(f.runtime.only(&rcv->ov).bytes == 5);
  CHECK(std::memcmp(in, "hello", 5) == 0);

  // Orderly close: success with 0 bytes, on recv and on read alike.
  test_overlapped* fin = f.fresh();
  REQUIRE(f.io->Recv(as_handle(server.fd), in, sizeof in, &fin->ov) == IOCM_E_IO_PENDING);
  REQUIRE(::shutdown(client.fd, SHUT_WR) == 0);
  REQUIRE(f.runtime.wait_for(5));
  CHECK(f.runtime.only(&fin->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&fin->ov).bytes == 0);
  test_overlapped* fin_read = f.fresh();
  REQUIRE(f.io->Read(as_handle(server.fd), in, sizeof in, &fin_read->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(6));
  CHECK(f.runtime.only(&fin_read->ov).error == ERROR_SUCCESS);
  CHECK(f.runtime.only(&fin_read->ov).bytes == 0);

  // Reset: the peer closes with SO_LINGER 0 -> ECONNRESET -> ERROR_NETNAME_DELETED.
  fd_guard c2, s2;
  connected_pair(c2, s2);
  REQUIRE(f.manager->Bind(f.port, as_handle(s2.fd)) == S_OK);
  test_overlapped* rst = f.fresh();
  REQUIRE(f.io->Recv(as_handle(s2.fd), in, sizeof in, &rst->ov) == IOCM_E_IO_PENDING);
  linger lg{1, 0};
  REQUIRE(::setsockopt(c2.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
  c2.reset();
  REQUIRE(f.runtime.wait_for(7));
  CHECK(f.runtime.only(&rst->ov).error == ERROR_NETNAME_DELETED);
  CHECK(f.runtime.only(&rst->ov).bytes == 0);

  // Sending on the reset connection fails without SIGPIPE.
  test_overlapped* dead = f.fresh();
  REQUIRE(f.io->Send(as_handle(s2.fd), "x", 1, &dead->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(8));
  const DWORD e = f.runtime.only(&dead->ov).error;
  CHECK((e == ERROR_BROKEN_PIPE || e == ERROR_NETNAME_DELETED));

  // Refused: nobody listens on the port any more.
  sockaddr_in gone = l.addr;
  // Unbind before close: otherwise the descriptor number, reused by the next
  // socket, would still be bound and Bind would refuse it.
  REQUIRE(f.io->Unbind(as_handle(l.fd.fd)) == S_OK);
  l.fd.reset();
  fd_guard c3(tcp_socket());
  REQUIRE(f.manager->Bind(f.port, as_handle(c3.fd)) == S_OK);
  test_overlapped* ref = f.fresh();
  REQUIRE(f.io->Connect(as_handle(c3.fd), &gone, sizeof gone, &ref->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(9));
  CHECK(f.runtime.only(&ref->ov).error == ERROR_CONNECTION_REFUSED);
  CHECK(f.runtime.count() == 9);
}

TEST_CASE("post carries the caller's error and bytes; nop completes 0/0") {
  engine_fixture f;
  test_overlapped* p = f.fresh();
  REQUIRE(f.io->Post(f.port, 1234, 77, &p->ov) == IOCM_E_IO_PENDING);
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  fd_guard r(fds[0]), w(fds[1]);
  REQUIRE(f.manager->Bind(nullptr, as_handle(r.fd)) == S_OK);
  test_overlapped* n = f.fresh();
  REQUIRE(f.io->Nop(as_handle(r.fd), &n->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(2));
  CHECK(f.runtime.only(&p->ov).error == 1234);
  CHECK(f.runtime.only(&p->ov).bytes == 77);
  CHECK(f.runtime.only(&n->ov).error == 0);
  CHECK(f.runtime.only(&n->ov).bytes == 0);
}
