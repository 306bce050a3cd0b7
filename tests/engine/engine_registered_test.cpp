// IOCM_FIXED_FILES (docs/ENGINE.md, "Registered files"): with io_uring, a
// bound descriptor is in its poller's file table from Bind to Unbind (the
// kernel's own view: the ring's /proc fdinfo lists the table), its I/O
// names it by index, and after Unbind the host's close really closes it.
// A descriptor beyond the table is used unregistered. On epoll the flag
// changes nothing, and the same I/O must work.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"

using namespace iocm_test;

namespace {

bool on_uring() {
  const char* b = std::getenv("IOCM_BACKEND");
  return b != nullptr && std::string(b) == "uring";
}

/// How many of this process's io_uring file tables list fd's socket.
int tables_listing(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  const std::string entry = ": socket:[" + std::to_string(st.st_ino) + "]";
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(f.path(), ec);
    if (ec || target.string() != "anon_inode:[io_uring]") continue;
    std::ifstream info("/proc/self/fdinfo/" + f.path().filename().string());
    std::stringstream text;
    text << info.rdbuf();
    const std::string s = text.str();
    const auto files = s.find("UserFiles:");
    const auto end = s.find("UserBufs:");
    if (files != std::string::npos && s.substr(files, end - files).find(entry) != std::string::npos)
      ++n;
  }
  return n;
}

/// Sparse file tables came with Linux 5.19: the uring run skips (exit 77)
/// before it.
void skip_without_sparse_tables() {
  utsname u{};
  int major = 0, minor = 0;
  if (!on_uring() || (::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
                      (major > 5 || (major == 5 && minor >= 19))))
    return;
  MESSAGE("this kernel has no sparse io_uring file tables (Linux 5.19): skipped");
  std::exit(77);
}

iocm_config registered_config() {
  skip_without_sparse_tables();
  iocm_config c = small_config();
  c.pollers = 1;
  c.flags |= IOCM_FIXED_FILES;
  return c;
}

/// A Nop through the handle's poller, waited for: the poller has taken
/// everything queued before it (Bind's registration among them).
void settle_poller(engine_fixture& f, int fd) {
  test_overlapped* o = f.fresh();
  const std::size_t before = f.runtime.count();
  REQUIRE(f.io->Nop(as_handle(fd), &o->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(before + 1));
}

/// One byte each way through the engine.
void round_trip(engine_fixture& f, int mine, int peer) {
  char in = 0;
  test_overlapped* r = f.fresh();
  test_overlapped* s = f.fresh();
  const std::size_t before = f.runtime.count();
  REQUIRE(f.io->Recv(as_handle(mine), &in, 1, &r->ov) == IOCM_E_IO_PENDING);
  REQUIRE(::send(peer, "p", 1, 0) == 1);
  REQUIRE(f.io->Send(as_handle(mine), "q", 1, &s->ov) == IOCM_E_IO_PENDING);
  REQUIRE(f.runtime.wait_for(before + 2));
  CHECK(f.runtime.only(&r->ov).bytes == 1);
  CHECK(in == 'p');
  CHECK(f.runtime.only(&s->ov).bytes == 1);
  char out = 0;
  REQUIRE(::recv(peer, &out, 1, 0) == 1);
  CHECK(out == 'q');
}

}  // namespace

TEST_CASE("registered files: in the poller's table from Bind to Unbind; then close closes") {
  engine_fixture f(registered_config());
  fd_guard client, server;
  connected_pair(client, server);
  const int listed_before = tables_listing(server.fd);
  CHECK(listed_before == 0);
  REQUIRE(f.manager->Bind(f.port, as_handle(server.fd)) == S_OK);
  settle_poller(f, server.fd);
  CHECK(tables_listing(server.fd) == (on_uring() ? 1 : 0));
  for (int i = 0; i < 3; ++i) round_trip(f, server.fd, client.fd);

  REQUIRE(f.io->Unbind(as_handle(server.fd)) == S_OK);
  CHECK(tables_listing(server.fd) == 0);
  server.reset(-1);  // nothing holds the socket now: the peer sees the end
  char c;
  timeval t{5, 0};
  ::setsockopt(client.fd, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
  CHECK(::recv(client.fd, &c, 1, 0) == 0);

  // The number bound again, to another socket: its own entry.
  fd_guard client2, server2;
  connected_pair(client2, server2);
  REQUIRE(f.manager->Bind(f.port, as_handle(server2.fd)) == S_OK);
  settle_poller(f, server2.fd);
  CHECK(tables_listing(server2.fd) == (on_uring() ? 1 : 0));
  round_trip(f, server2.fd, client2.fd);
}

TEST_CASE("registered files: a descriptor beyond the table is used unregistered") {
  // The table is as large as RLIMIT_NOFILE when the engine starts: start
  // it under a low limit, raise it again, and bind a descriptor above.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  if (old.rlim_max < 300) {
    MESSAGE("RLIMIT_NOFILE's hard limit is below 300: skipped");
    return;
  }
  rlimit low = old;
  low.rlim_cur = 128;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  engine_fixture f(registered_config());
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  fd_guard client, server;
  connected_pair(client, server);
  const int high = ::dup2(server.fd, 250);
  REQUIRE(high == 250);
  fd_guard high_guard(high);
  REQUIRE(f.manager->Bind(f.port, as_handle(high)) == S_OK);
  settle_poller(f, high);
  CHECK(tables_listing(high) == 0);
  round_trip(f, high, client.fd);
  REQUIRE(f.io->Unbind(as_handle(high)) == S_OK);
}
