// Kernel objects the engine tests work on: descriptors that close
// themselves, unlinked temporary files, loopback TCP.
#pragma once

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>

#include "iocm/hosting.h"

namespace iocm_test {

struct fd_guard {
  int fd = -1;
  explicit fd_guard(int f = -1) : fd(f) {}
  fd_guard(const fd_guard&) = delete;
  fd_guard& operator=(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

/// A connected AF_UNIX stream pair that closes itself.
struct socket_pair {
  fd_guard a, b;
  socket_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

inline int temp_file() {
  char path[] = "/tmp/iocm-test-XXXXXX";
  const int fd = ::mkostemp(path, O_CLOEXEC);
  REQUIRE(fd >= 0);
  ::unlink(path);
  return fd;
}

inline void set_offset(iocm::hosting::OVERLAPPED& ov, std::uint64_t offset) {
  ov.Offset = static_cast<iocm::hosting::DWORD>(offset);
  ov.OffsetHigh = static_cast<iocm::hosting::DWORD>(offset >> 32);
}

struct tcp_listener {
  fd_guard fd;
  sockaddr_in addr{};
  tcp_listener() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.fd >= 0);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd.fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    REQUIRE(::listen(fd.fd, 16) == 0);
  }
};

inline int tcp_socket() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  return fd;
}

/// A connected pair (client, server) made with plain syscalls.
inline void connected_pair(fd_guard& client, fd_guard& server) {
  tcp_listener l;
  client.reset(tcp_socket());
  REQUIRE(::connect(client.fd, reinterpret_cast<sockaddr*>(&l.addr), sizeof l.addr) == 0);
  server.reset(::accept4(l.fd.fd, nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server.fd >= 0);
}

}  // namespace iocm_test
