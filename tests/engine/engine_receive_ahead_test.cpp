// IIocmHostIo2::SetCompletionModes with IOCM_RECEIVE_AHEAD (docs/ENGINE.md,
// "Receiving ahead"): a socket's bytes may be received before the host
// posts a Recv (io_uring: one multishot receive into the poller's buffers);
// every byte still reaches the host's Recvs once, in order: with bytes sent
// before any Recv, with the poller's buffers used up, across Cancel, Unbind
// and a later Bind, and when the host turns the mode off.
//
// Each case runs on both backends (CTest runs the program with
// IOCM_BACKEND=uring and =epoll): epoll does not receive ahead, and must
// answer the same. The uring run exits 77 (skipped) on a kernel without
// multishot receive (before 6.0).
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm_test;

namespace {

bool on_uring() {
  const char* b = std::getenv("IOCM_BACKEND");
  return b != nullptr && std::string(b) == "uring";
}

/// Multishot receive came with Linux 6.0.
bool kernel_receives_ahead() {
  utsname u{};
  int major = 0, minor = 0;
  return ::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 && major >= 6;
}

/// The byte at position i of stream `s`: no two streams alike, no short period.
char pattern(unsigned s, std::size_t i) {
  return static_cast<char>((i * 131 + s * 7 + (i >> 9)) % 251);
}

void send_all(int fd, const char* data, std::size_t n) {
  while (n != 0) {
    const ssize_t k = ::send(fd, data, n, MSG_NOSIGNAL);
    REQUIRE(k > 0);
    data += k;
    n -= static_cast<std::size_t>(k);
  }
}

void send_pattern(int fd, unsigned s, std::size_t from, std::size_t n) {
  std::string bytes(n, '\0');
  for (std::size_t i = 0; i < n; ++i) bytes[i] = pattern(s, from + i);
  send_all(fd, bytes.data(), n);
}

/// Bytes the kernel still holds for fd to read.
int kernel_holds(int fd) {
  int n = -1;
  REQUIRE(::ioctl(fd, FIONREAD, &n) == 0);
  return n;
}

/// On io_uring, waits until the engine has taken everything the kernel
/// held for fd (it received ahead); true when it did within 5 s.
bool engine_took_all(int fd) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (kernel_holds(fd) != 0) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

/// Connections waiting in a listener's backlog (tcp_info's unacked on a
/// listening socket).
unsigned backlog_of(int listener) {
  tcp_info info{};
  socklen_t size = sizeof info;
  REQUIRE(::getsockopt(listener, IPPROTO_TCP, TCP_INFO, &info, &size) == 0);
  return info.tcpi_unacked;
}

/// Waits up to 5 s until the listener's backlog is empty (the engine
/// accepted ahead).
void wait_backlog_empty(int listener) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (backlog_of(listener) != 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

/// A client that connects to `l` and sends its number (4 bytes).
int numbered_client(const tcp_listener& l, std::uint32_t number) {
  const int fd = tcp_socket();
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&l.addr), sizeof l.addr) == 0);
  send_all(fd, reinterpret_cast<const char*>(&number), sizeof number);
  return fd;
}

/// The fixture with the mode at hand; every case skips on a uring run
/// where the kernel cannot receive ahead.
struct ahead_fixture : engine_fixture {
  explicit ahead_fixture(const iocm_config& c = small_config())
      : engine_fixture(c), io2(io2_of(manager.get())) {}

  /// As engine_fixture::settle, with this interface's reference gone too.
  void settle() {
    io2.reset();
    engine_fixture::settle();
  }

  void bind_ahead(int fd, DWORD modes = IOCM_RECEIVE_AHEAD) {
    REQUIRE(manager->Bind(port, as_handle(fd)) == S_OK);
    REQUIRE(io2->SetCompletionModes(as_handle(fd), modes) == S_OK);
  }

  /// Posts an Accept and waits for it; returns the accepted socket, or -1.
  int accept(int listener) {
    test_overlapped* o = fresh();
    HANDLE accepted = nullptr;
    const std::size_t before = runtime.count();
    REQUIRE(io->Accept(as_handle(listener), &accepted, &o->ov) == IOCM_E_IO_PENDING);
    REQUIRE(runtime.wait_for(before + 1));
    if (runtime.only(&o->ov).error != 0) return -1;
    return static_cast<int>(reinterpret_cast<std::intptr_t>(accepted));
  }

  /// Accepts n connections and reads each one's number: each of 0..n-1
  /// exactly once.
  void expect_numbered(int listener, unsigned n) {
    std::set<std::uint32_t> seen;
    for (unsigned i = 0; i < n; ++i) {
      const int s = accept(listener);
      REQUIRE(s >= 0);
      std::uint32_t number = 0;
      REQUIRE(::recv(s, &number, sizeof number, MSG_WAITALL) == sizeof number);
      ::close(s);
      CHECK(number < n);
      CHECK(seen.insert(number).second);
    }
    CHECK(seen.size() == n);
  }

  /// Posts a Recv (or a Read) and waits for its completion.
  completion_seen receive(int fd, char* buffer, DWORD length, bool as_read = false) {
    test_overlapped* o = fresh();
    const std::size_t before = runtime.count();
    const HRESULT hr = as_read ? io->Read(as_handle(fd), buffer, length, &o->ov)
                               : io->Recv(as_handle(fd), buffer, length, &o->ov);
    REQUIRE(hr == IOCM_E_IO_PENDING);
    REQUIRE(runtime.wait_for(before + 1));
    return runtime.only(&o->ov);
  }

  /// Receives exactly n bytes of stream s, from position `from`, in Recvs
  /// of `chunk` bytes; checks every byte.
  void expect_pattern(int fd, unsigned s, std::size_t from, std::size_t n, DWORD chunk) {
    std::vector<char> buffer(chunk);
    std::size_t got = 0;
    while (got < n) {
      const completion_seen c = receive(fd, buffer.data(), chunk);
      REQUIRE(c.error == 0);
      REQUIRE(c.bytes > 0);  // no early end of stream
      REQUIRE(got + c.bytes <= n);
      for (DWORD i = 0; i < c.bytes; ++i)
        if (buffer[i] != pattern(s, from + got + i))
          FAIL("stream " << s << ": byte " << from + got + i << " is wrong");
      got += c.bytes;
    }
  }

  host_io2_ptr io2;
};

#define SKIP_WITHOUT_MULTISHOT()                                            \
  do {                                                                      \
    if (on_uring() && !kernel_receives_ahead()) {                           \
      MESSAGE("this kernel has no multishot receive (Linux 6.0): skipped"); \
      std::exit(77);                                                        \
    }                                                                       \
  } while (0)

}  // namespace

TEST_CASE("bytes sent before a Recv is posted are received ahead and served in order") {
  SKIP_WITHOUT_MULTISHOT();
  ahead_fixture f;
  fd_guard client, server;
  connected_pair(client, server);
  f.bind_ahead(server.fd);
  char buffer[8192];

  send_all(client.fd, "hello", 5);
  completion_seen c = f.receive(server.fd, buffer, 5);
  CHECK(c.error == 0);
  CHECK(std::string(buffer, c.bytes) == "hello");

  // No Recv posted: io_uring takes the bytes anyway, epoll leaves them.
  send_pattern(client.fd, 0, 0, 20000);
  if (on_uring()) {
    CHECK(engine_took_all(server.fd));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(kernel_holds(server.fd) == 20000);
  }
  // Served in Recvs smaller and larger than a buffer, and a Read.
  f.expect_pattern(server.fd, 0, 0, 3000, 3000);
  c = f.receive(server.fd, buffer, 7000, /*as_read=*/true);
  REQUIRE(c.error == 0);
  for (DWORD i = 0; i < c.bytes; ++i) REQUIRE(buffer[i] == pattern(0, 3000 + i));
  f.expect_pattern(server.fd, 0, 3000 + c.bytes, 17000 - c.bytes, 5000);

  // A Recv of 0 bytes (the zero-byte read) waits for bytes, completes with
  // 0 and leaves them.
  test_overlapped* zero = f.fresh();
  const std::size_t before = f.runtime.count();
  REQUIRE(f.io->Recv(as_handle(server.fd), buffer, 0, &zero->ov) == IOCM_E_IO_PENDING);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(f.runtime.count() == before);
  send_pattern(client.fd, 7, 0, 50);
  REQUIRE(f.runtime.wait_for(before + 1));
  CHECK(f.runtime.only(&zero->ov).error == 0);
  CHECK(f.runtime.only(&zero->ov).bytes == 0);
  f.expect_pattern(server.fd, 7, 0, 50, 50);

  // The mode turned off with bytes kept: they still come first.
  send_pattern(client.fd, 1, 0, 6000);
  if (on_uring()) CHECK(engine_took_all(server.fd));
  REQUIRE(f.io2->SetCompletionModes(as_handle(server.fd), 0) == S_OK);
  send_pattern(client.fd, 1, 6000, 3000);
  f.expect_pattern(server.fd, 1, 0, 9000, 2500);

  // And on again; then the peer's orderly close, after its last bytes.
  REQUIRE(f.io2->SetCompletionModes(as_handle(server.fd), IOCM_RECEIVE_AHEAD) == S_OK);
  send_pattern(client.fd, 2, 0, 100);
  REQUIRE(::shutdown(client.fd, SHUT_WR) == 0);
  f.expect_pattern(server.fd, 2, 0, 100, 4096);
  c = f.receive(server.fd, buffer, sizeof buffer);
  CHECK(c.error == 0);
  CHECK(c.bytes == 0);
  c = f.receive(server.fd, buffer, sizeof buffer);  // and again, as recv(2) says
  CHECK(c.error == 0);
  CHECK(c.bytes == 0);
}

TEST_CASE("the poller's buffers used up mid-stream: every socket still gets every byte") {
  SKIP_WITHOUT_MULTISHOT();
  // One poller, so that all sockets share its 1024 buffers: 160 sockets
  // each keeping at least 8 of them (32 KiB) use them up, and receives end
  // with ENOBUFS; the Recvs posted then must still get every byte.
  iocm_config config = small_config();
  config.pollers = 1;
  ahead_fixture f(config);
  constexpr unsigned sockets = 160;
  constexpr std::size_t stream = 48 * 1024;
  std::vector<fd_guard> clients(sockets), servers(sockets);
  for (unsigned s = 0; s < sockets; ++s) {
    connected_pair(clients[s], servers[s]);
    f.bind_ahead(servers[s].fd);
    send_pattern(clients[s].fd, s, 0, 1);
    f.expect_pattern(servers[s].fd, s, 0, 1, 1);  // its receive is in the kernel now
  }
  for (unsigned s = 0; s < sockets; ++s) send_pattern(clients[s].fd, s, 1, stream - 1);
  if (on_uring()) {
    // The engine holds all it could: some sockets' bytes wait in the kernel.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::size_t in_kernel = 0;
    for (unsigned s = 0; s < sockets; ++s) in_kernel += kernel_holds(servers[s].fd);
    CHECK(in_kernel > 0);
    CHECK(in_kernel < sockets * (stream - 1));
  }
  for (unsigned s = 0; s < sockets; ++s)
    f.expect_pattern(servers[s].fd, s, 1, stream - 1, 1000 + (s * 1237) % 9000);
}

TEST_CASE("Unbind keeps bytes received ahead for the same socket's next Bind, not another's") {
  SKIP_WITHOUT_MULTISHOT();
  ahead_fixture f;
  fd_guard client, server;
  connected_pair(client, server);
  f.bind_ahead(server.fd);
  send_pattern(client.fd, 3, 0, 10);
  f.expect_pattern(server.fd, 3, 0, 10, 64);
  send_pattern(client.fd, 3, 10, 9000);
  if (on_uring()) CHECK(engine_took_all(server.fd));
  REQUIRE(f.io->Unbind(as_handle(server.fd)) == S_OK);

  // Bound again: the bytes come first, then what the peer sends next.
  f.bind_ahead(server.fd);
  send_pattern(client.fd, 3, 9010, 500);
  f.expect_pattern(server.fd, 3, 10, 9500, 4000);

  // Bound again without the mode: the same.
  send_pattern(client.fd, 3, 9510, 3000);
  if (on_uring()) CHECK(engine_took_all(server.fd));
  REQUIRE(f.io->Unbind(as_handle(server.fd)) == S_OK);
  REQUIRE(f.manager->Bind(f.port, as_handle(server.fd)) == S_OK);
  f.expect_pattern(server.fd, 3, 9510, 3000, 1024);

  // Bytes kept for a socket the host then closed: another socket given
  // the same number gets none of them.
  REQUIRE(f.io2->SetCompletionModes(as_handle(server.fd), IOCM_RECEIVE_AHEAD) == S_OK);
  send_pattern(client.fd, 3, 12510, 1);
  f.expect_pattern(server.fd, 3, 12510, 1, 1);
  send_pattern(client.fd, 3, 12511, 700);
  if (on_uring()) CHECK(engine_took_all(server.fd));
  REQUIRE(f.io->Unbind(as_handle(server.fd)) == S_OK);
  const int number = server.fd;
  fd_guard client2, server2;
  connected_pair(client2, server2);
  REQUIRE(::dup2(server2.fd, number) == number);  // closes the old socket
  f.bind_ahead(number);
  send_pattern(client2.fd, 4, 0, 300);
  f.expect_pattern(number, 4, 0, 300, 4096);
}

TEST_CASE("Cancel of a waiting Recv, and Close with bytes received ahead and a Recv waiting") {
  SKIP_WITHOUT_MULTISHOT();
  ahead_fixture f;
  fd_guard client, server;
  connected_pair(client, server);
  f.bind_ahead(server.fd);
  char buffer[256];
  test_overlapped* waiting = f.fresh();
  REQUIRE(f.io->Recv(as_handle(server.fd), buffer, sizeof buffer, &waiting->ov) ==
          IOCM_E_IO_PENDING);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(f.io->Cancel(as_handle(server.fd), &waiting->ov) == S_OK);
  REQUIRE(f.runtime.wait_for(1));
  CHECK(f.runtime.only(&waiting->ov).error == ERROR_OPERATION_ABORTED);
  // Cancelling all of a socket whose only Recv is gone finds nothing, even
  // though its receive ahead is in the kernel.
  CHECK(f.io->Cancel(as_handle(server.fd), nullptr) == HRESULT_FROM_WIN32(ERROR_NOT_FOUND));
  send_pattern(client.fd, 5, 0, 3000);
  f.expect_pattern(server.fd, 5, 0, 3000, 256);

  // Bytes kept and a Recv waiting on a second socket when the port closes.
  fd_guard client2, server2;
  connected_pair(client2, server2);
  f.bind_ahead(server2.fd);
  send_pattern(client2.fd, 6, 0, 10);
  f.expect_pattern(server2.fd, 6, 0, 10, 10);
  send_pattern(client2.fd, 6, 10, 5000);
  if (on_uring()) CHECK(engine_took_all(server2.fd));
  // A buffer per Recv: they are in flight at once, on two pollers.
  char one[1], big[8192], big2[8192];
  test_overlapped* last = f.fresh();
  // It takes what is kept (or, on epoll, what the kernel has) at once.
  REQUIRE(f.io->Recv(as_handle(server2.fd), one, 1, &last->ov) == IOCM_E_IO_PENDING);
  test_overlapped* left = f.fresh();
  send_pattern(client.fd, 5, 3000, 1);  // the first socket's receive brings one more
  REQUIRE(f.io->Recv(as_handle(server.fd), big, sizeof big, &left->ov) == IOCM_E_IO_PENDING);
  test_overlapped* open = f.fresh();
  REQUIRE(f.io->Recv(as_handle(server.fd), big2, sizeof big2, &open->ov) == IOCM_E_IO_PENDING);
  f.settle();  // closes the port: the one still waiting completes aborted
  CHECK(f.runtime.only(&open->ov).error == ERROR_OPERATION_ABORTED);
}

TEST_CASE("a socket closed without Unbind while it receives ahead: the engine still closes") {
  SKIP_WITHOUT_MULTISHOT();
  // Its receive holds the socket in the kernel, so the peer sees no close,
  // and the number no longer finds it: Close must cancel it another way.
  ahead_fixture f;
  fd_guard client, server;
  connected_pair(client, server);
  f.bind_ahead(server.fd);
  send_pattern(client.fd, 8, 0, 10);
  f.expect_pattern(server.fd, 8, 0, 10, 10);
  server.reset(-1);  // closed, still bound
  f.settle();        // returns: nothing of it is left in the kernel
  CHECK(f.runtime.count() == 1);
}

TEST_CASE("accepting ahead: a connection storm, every connection accepted once, in order kept") {
  SKIP_WITHOUT_MULTISHOT();
  ahead_fixture f;
  tcp_listener l;
  REQUIRE(::listen(l.fd.fd, 4096) == 0);
  f.bind_ahead(l.fd.fd, IOCM_ACCEPT_AHEAD);
  std::vector<fd_guard> clients(600);
  clients[0].reset(numbered_client(l, 0));
  f.expect_numbered(l.fd.fd, 1);  // its multishot accept is in the kernel now

  // No Accept posted: io_uring takes connections from the backlog anyway
  // (up to 64 of them), epoll leaves them there.
  for (std::uint32_t i = 1; i <= 10; ++i) clients[i].reset(numbered_client(l, i - 1));
  if (on_uring()) {
    wait_backlog_empty(l.fd.fd);
    CHECK(backlog_of(l.fd.fd) == 0);
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(backlog_of(l.fd.fd) == 10);
  }
  f.expect_numbered(l.fd.fd, 10);

  // A storm: 589 connections from another thread while Accepts come one by
  // one; more than a listener may keep, so accepting pauses and resumes.
  std::thread storm([&] {
    for (std::uint32_t i = 11; i < 600; ++i) clients[i].reset(numbered_client(l, i - 11));
  });
  f.expect_numbered(l.fd.fd, 589);
  storm.join();
  CHECK(backlog_of(l.fd.fd) == 0);
}

TEST_CASE("accepting ahead: Unbind keeps the connections for the next Bind; Close closes them") {
  SKIP_WITHOUT_MULTISHOT();
  // One poller: a number bound again comes back to the same poller's state.
  iocm_config one = small_config();
  one.pollers = 1;
  ahead_fixture f(one);
  tcp_listener l;
  f.bind_ahead(l.fd.fd, IOCM_ACCEPT_AHEAD);
  std::vector<fd_guard> clients(12);
  clients[0].reset(numbered_client(l, 0));
  f.expect_numbered(l.fd.fd, 1);
  for (std::uint32_t i = 1; i <= 5; ++i) clients[i].reset(numbered_client(l, i - 1));
  if (on_uring()) wait_backlog_empty(l.fd.fd);
  REQUIRE(f.io->Unbind(as_handle(l.fd.fd)) == S_OK);
  f.bind_ahead(l.fd.fd, IOCM_ACCEPT_AHEAD);
  f.expect_numbered(l.fd.fd, 5);

  // Another listener's number given to a connected socket that receives
  // ahead: its Recvs are receives, nothing of the listener is left. (Its
  // peer stays open to the end, so that its receive does not end by itself.)
  fd_guard client;
  {
    tcp_listener other;
    f.bind_ahead(other.fd.fd, IOCM_ACCEPT_AHEAD);
    fd_guard c(numbered_client(other, 0));
    f.expect_numbered(other.fd.fd, 1);
    REQUIRE(f.io->Unbind(as_handle(other.fd.fd)) == S_OK);
    fd_guard server;
    connected_pair(client, server);
    REQUIRE(::dup2(server.fd, other.fd.fd) == other.fd.fd);  // closes the listener
    f.bind_ahead(other.fd.fd);
    send_pattern(client.fd, 9, 0, 2000);
    f.expect_pattern(other.fd.fd, 9, 0, 2000, 700);
    // Closed without Unbind while its receive is in the kernel: Close
    // below must still find that receive (by what it is, not what the
    // number was).
    ::close(other.fd.fd);
    other.fd.fd = -1;
  }

  // Kept when the port closes: closed, so their peers see the end. (An
  // Accept that finds none kept arms the multishot accept again.)
  clients[9].reset(numbered_client(l, 0));
  f.expect_numbered(l.fd.fd, 1);
  for (std::uint32_t i = 6; i <= 8; ++i) clients[i].reset(numbered_client(l, i));
  if (on_uring()) {
    wait_backlog_empty(l.fd.fd);
    CHECK(backlog_of(l.fd.fd) == 0);
    f.settle();
    for (std::uint32_t i = 6; i <= 8; ++i) {
      char c;
      timeval t{5, 0};
      ::setsockopt(clients[i].fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
      CHECK(::recv(clients[i].fd, &c, 1, 0) <= 0);  // the end (0) or a reset, not a timeout
      CHECK(errno != EAGAIN);
    }
  }
}
