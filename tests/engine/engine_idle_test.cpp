// An idle connection costs memory, never the ability to serve others: with
// 20,000 idle connections on one poller, each with a receive waiting in the
// engine, a new connection is still accepted and its request answered.
// (io_uring rings hold a few hundred completions; an engine that kept no
// more operations in flight than that would serve nobody new here.)
// Run once per backend.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "support/engine_fixture.h"
#include "support/kernel_objects.h"
#include "support/op_ledger.h"

using namespace iocm_test;
using namespace std::chrono_literals;

namespace {

/// Raises the open-descriptor limit towards `want`; returns what it got.
rlim_t raise_descriptor_limit(rlim_t want) {
  rlimit l{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &l) == 0);
  if (l.rlim_cur >= want) return l.rlim_cur;
  rlimit more{want, l.rlim_max > want ? l.rlim_max : want};
  if (::setrlimit(RLIMIT_NOFILE, &more) == 0) return want;  // raising the hard limit needs root
  more = {l.rlim_max, l.rlim_max};
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &more) == 0);
  return l.rlim_max;
}

}  // namespace

TEST_CASE("20,000 idle connections on one poller: a new connection is still served") {
  // This process holds the server's end of each connection; a child holds
  // the clients' ends, so that each side needs one descriptor per
  // connection.
  constexpr std::size_t wanted = 20000, reserve = 64;
  const rlim_t limit = raise_descriptor_limit(wanted + reserve);
  const std::size_t idle = limit >= wanted + reserve ? wanted : limit - reserve;
  if (idle < wanted)
    WARN_MESSAGE(false, "the descriptor limit (" << limit << ") allows " << idle
                                                 << " idle connections, not " << wanted);
  tcp_listener listener;
  REQUIRE(::listen(listener.fd.fd, 4096) == 0);
  int ready[2];
  REQUIRE(::pipe2(ready, O_CLOEXEC) == 0);
  fd_guard ready_r(ready[0]), ready_w(ready[1]);
  // Forked before the engine starts any thread: the child only connects,
  // says so, and waits for the end of the test (its pipe closes).
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // ends with the test, however it ends
    ::close(ready[0]);
    ::close(STDOUT_FILENO);
    for (std::size_t i = 0; i < idle; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0 ||
          ::connect(fd, reinterpret_cast<sockaddr*>(&listener.addr), sizeof listener.addr) != 0)
        ::_exit(1);
    }
    char done = 1;
    if (::write(ready[1], &done, 1) != 1) ::_exit(1);
    ::pause();  // killed by the parent
    ::_exit(0);
  }
  ready_w.reset();
  struct reap {
    pid_t pid;
    ~reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper{child};
  std::vector<std::unique_ptr<fd_guard>> servers;
  servers.reserve(idle);
  for (std::size_t i = 0; i < idle; ++i) {
    servers.push_back(
        std::make_unique<fd_guard>(::accept4(listener.fd.fd, nullptr, nullptr, SOCK_CLOEXEC)));
    REQUIRE(servers.back()->fd >= 0);
  }
  char done = 0;
  REQUIRE(::read(ready_r.fd, &done, 1) == 1);

  // Declared before the engine, which delivers into them until it is gone.
  op_ledger book(idle + 3);
  std::atomic<std::size_t> orderly{0};
  std::vector<std::unique_ptr<test_overlapped>> recvs;
  recvs.reserve(idle);
  iocm_config c = small_config();
  c.pollers = 1;
  engine_fixture f(c);
  REQUIRE(f.manager->Bind(f.port, as_handle(listener.fd.fd)) == S_OK);
  // Each server end: bound, with a receive in flight that nothing will
  // complete.
  f.runtime.hook = [&](DWORD error, DWORD bytes, void* ov) {
    const std::uint64_t tag = holder_of<test_overlapped>(ov)->tag;
    if (tag < idle && error == ERROR_SUCCESS && bytes == 0) orderly.fetch_add(1);
    book.completed(tag);
  };
  char sink[1];
  for (std::size_t i = 0; i < idle; ++i) {
    REQUIRE(f.manager->Bind(f.port, as_handle(servers[i]->fd)) == S_OK);
    recvs.push_back(std::make_unique<test_overlapped>());
    recvs.back()->tag = i;
    REQUIRE(f.manager->InitializeHostOverlapped(&recvs.back()->ov) == S_OK);
    // 20,000 submissions in a burst to one poller: on a loaded machine its
    // inbox can stay full longer than a submission waits for room, and the
    // engine says ERROR_NO_SYSTEM_RESOURCES; a host retries later.
    HRESULT hr;
    for (int tries = 0;; ++tries) {
      hr = f.io->Recv(as_handle(servers[i]->fd), sink, sizeof sink, &recvs.back()->ov);
      if (hr != HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES) || tries == 1000) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    CAPTURE(hr);
    REQUIRE(book.answered(i, hr == IOCM_E_IO_PENDING));
  }

  // A new client: the engine accepts it, receives its request, answers it.
  const auto start = std::chrono::steady_clock::now();
  HANDLE accepted = nullptr;
  test_overlapped* accept_op = f.fresh(idle);
  REQUIRE(book.answered(idle, f.io->Accept(as_handle(listener.fd.fd), &accepted, &accept_op->ov) ==
                                  IOCM_E_IO_PENDING));
  fd_guard client(tcp_socket());
  REQUIRE(::connect(client.fd, reinterpret_cast<sockaddr*>(&listener.addr), sizeof listener.addr) ==
          0);
  auto wait = [&](std::size_t id) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (book.completed_count(id) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(100us);
    return book.completed_count(id) == 1;
  };
  REQUIRE_MESSAGE(wait(idle), "the new connection was not accepted within 10 s");
  fd_guard server(static_cast<int>(reinterpret_cast<std::intptr_t>(accepted)));
  REQUIRE(f.manager->Bind(f.port, accepted) == S_OK);
  char request[8] = {};
  test_overlapped* recv_op = f.fresh(idle + 1);
  REQUIRE(book.answered(
      idle + 1, f.io->Recv(accepted, request, sizeof request, &recv_op->ov) == IOCM_E_IO_PENDING));
  REQUIRE(::write(client.fd, "GET", 3) == 3);
  REQUIRE_MESSAGE(wait(idle + 1), "the new connection's request was not received within 10 s");
  CHECK(std::memcmp(request, "GET", 3) == 0);
  test_overlapped* send_op = f.fresh(idle + 2);
  REQUIRE(
      book.answered(idle + 2, f.io->Send(accepted, "OK", 2, &send_op->ov) == IOCM_E_IO_PENDING));
  char reply[2] = {};
  REQUIRE(::read(client.fd, reply, 2) == 2);
  CHECK(std::memcmp(reply, "OK", 2) == 0);
  const auto served = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - start);
  MESSAGE("with " << idle << " idle connections, a new one was accepted and answered in "
                  << served.count() << " us");
  REQUIRE(wait(idle + 2));

  // Every idle receive is still there. Now every idle client goes at once
  // (the child ends): all the receives complete together, far more than a
  // CQ holds, each exactly once, as an orderly close (0 bytes).
  CHECK(book.completions() == 3);
  ::kill(child, SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (book.completions() < idle + 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(book.completions() == idle + 3);
  CHECK(orderly.load() == idle);
  REQUIRE(f.io->Unbind(accepted) == S_OK);
  REQUIRE(f.manager->CloseIoCompletionPort(f.port) == S_OK);
  CHECK(book.count().completed == idle + 3);
  f.io.reset();
  f.manager.reset();
  CHECK(book.report(ledger_name("idle connections").c_str()));
}
