// The example hosts as a user runs them: separate processes, reached over
// loopback TCP, stopped with SIGTERM. Runs once per backend (IOCM_BACKEND
// is inherited by the host).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "support/kernel_objects.h"

extern char** environ;

namespace {

using iocm_test::fd_guard;
using clock_type = std::chrono::steady_clock;

/// Reads what is there within `ms`; "" on timeout, and stops at EOF.
std::string read_some(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return {};
  char b[65536];
  const ssize_t n = ::read(fd, b, sizeof b);
  return n > 0 ? std::string(b, static_cast<std::size_t>(n)) : std::string{};
}

/// Reads until EOF (or `ms` without progress); `eof` says which.
std::string read_to_eof(int fd, int ms, bool& eof) {
  std::string all;
  eof = false;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return all;
    char b[65536];
    const ssize_t n = ::read(fd, b, sizeof b);
    if (n <= 0) {
      eof = n == 0;
      return all;
    }
    all.append(b, static_cast<std::size_t>(n));
  }
}

/// A host process with its stdout and stderr on pipes.
struct host_process {
  pid_t pid = -1;
  fd_guard out, err;
  std::uint16_t port = 0;
  std::string banner;

  explicit host_process(std::vector<std::string> args) {
    int o[2], e[2];
    REQUIRE(::pipe2(o, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(e, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, o[1], 1);
    posix_spawn_file_actions_adddup2(&fa, e[1], 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    REQUIRE(::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    ::close(o[1]);
    ::close(e[1]);
    out.reset(o[0]);
    err.reset(e[0]);
  }

  /// Waits for "listening on A:PORT" and keeps the port.
  void wait_listening() {
    const auto until = clock_type::now() + std::chrono::seconds(20);
    while (banner.find('\n') == std::string::npos && clock_type::now() < until)
      banner += read_some(out.fd, 100);
    const auto colon = banner.rfind(':');
    REQUIRE_MESSAGE(colon != std::string::npos, "no banner; got: " << banner);
    port = static_cast<std::uint16_t>(std::stoul(banner.substr(colon + 1)));
    REQUIRE(port != 0);
  }

  /// Waits for exit; returns the status (or -1 after `seconds`).
  int wait_exit(int seconds = 20) {
    const auto until = clock_type::now() + std::chrono::seconds(seconds);
    while (clock_type::now() < until) {
      int status = 0;
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return -1;
  }

  std::string stderr_text() {
    bool eof = false;
    return read_to_eof(err.fd, 200, eof);
  }

  ~host_process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

/// A connected client socket; rcvbuf > 0 shrinks its receive buffer first.
int connect_to(std::uint16_t port, int rcvbuf = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE(n > 0);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

/// Reads until `size` bytes came (or 10 s passed).
std::string read_exactly(int fd, std::size_t size) {
  std::string got;
  const auto until = clock_type::now() + std::chrono::seconds(10);
  while (got.size() < size && clock_type::now() < until) got += read_some(fd, 100);
  return got;
}

std::size_t count(std::string_view hay, std::string_view needle) {
  std::size_t n = 0;
  for (auto p = hay.find(needle); p != std::string_view::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

const std::string get = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
constexpr std::string_view ok_reply_head = "HTTP/1.1 200 OK\r\n";

/// The length of one "Hello, World!" reply (its Date has a fixed width).
std::size_t reply_size(std::uint16_t port) {
  fd_guard c(connect_to(port));
  send_all(c.fd, get);
  std::string r;
  const auto until = clock_type::now() + std::chrono::seconds(10);
  while (r.find("Hello, World!") == std::string::npos && clock_type::now() < until)
    r += read_some(c.fd, 100);
  REQUIRE(r.starts_with(ok_reply_head));
  REQUIRE(r.ends_with("\r\n\r\nHello, World!"));
  CHECK(r.find("Content-Length: 13\r\n") != std::string::npos);
  CHECK(r.find("Date: ") != std::string::npos);
  return r.size();
}

}  // namespace

/// Every connection sends `bytes` of its own pattern while reading the echo
/// back; each must get exactly what it sent.
void check_echo(std::vector<std::string> args, int connections, std::size_t bytes) {
  host_process h(std::move(args));
  h.wait_listening();
  std::vector<std::thread> clients;
  std::vector<int> good(connections, 0);
  for (int k = 0; k < connections; ++k) {
    clients.emplace_back([&, k] {
      fd_guard c(connect_to(h.port));
      std::string data(bytes, '\0');
      for (std::size_t i = 0; i < bytes; ++i)
        data[i] = static_cast<char>((i * 131 + static_cast<std::size_t>(k) * 7) & 0xff);
      // Write in odd-sized pieces while reading, so neither side's buffer
      // fills up.
      std::string back;
      std::size_t at = 0;
      while (back.size() < bytes) {
        if (at < bytes) {
          const std::size_t piece = std::min<std::size_t>(3001, bytes - at);
          if (::send(c.fd, data.data() + at, piece, MSG_NOSIGNAL) != static_cast<ssize_t>(piece))
            return;
          at += piece;
        }
        std::string r = read_some(c.fd, at < bytes ? 0 : 2000);
        if (r.empty() && at >= bytes) return;
        back += r;
      }
      good[k] = back == data;
    });
  }
  for (auto& t : clients) t.join();
  for (int k = 0; k < connections; ++k) CHECK_MESSAGE(good[k] == 1, "connection " << k);
  ::kill(h.pid, SIGTERM);
  CHECK(h.wait_exit() == 0);
}

TEST_CASE("iocm-echo returns every byte, in order, on many connections at once") {
  check_echo({IOCM_ECHO_PATH, "--port", "0"}, 6, 256 * 1024);
}

TEST_CASE("iocm-echo receiving ahead: every byte, in order, on 64 connections") {
  check_echo({IOCM_ECHO_PATH, "--port", "0", "--receive-ahead", "--accept-ahead"}, 64, 64 * 1024);
}

/// The count after `key` ("send 12" -> 12) in the metrics line that starts
/// with `line`, or -1.
long long metric_in(const std::string& text, const std::string& line, const std::string& key) {
  const auto at = text.find(line);
  if (at == std::string::npos) return -1;
  const auto end = text.find('\n', at);
  const std::string l = text.substr(at, end - at);
  const auto k = l.find(" " + key + " ");
  return k == std::string::npos ? -1 : std::stoll(l.substr(k + key.size() + 2));
}

TEST_CASE("iocm-echo prints the engine's metrics on SIGUSR1 and when it stops") {
  host_process h({IOCM_ECHO_PATH, "--port", "0"});
  h.wait_listening();
  {
    fd_guard c(connect_to(h.port));
    for (int i = 0; i < 10; ++i) {
      send_all(c.fd, std::string(64, 'e'));
      std::string back;
      while (back.size() < 64) {
        const std::string r = read_some(c.fd, 2000);
        REQUIRE_FALSE(r.empty());
        back += r;
      }
    }
  }
  ::kill(h.pid, SIGUSR1);
  std::string text;
  const auto until = clock_type::now() + std::chrono::seconds(20);
  while (text.find("kernel refusals") == std::string::npos && clock_type::now() < until)
    text += read_some(h.out.fd, 100);
  INFO(text);
  CHECK(text.find("iocm-echo: metrics: ") != std::string::npos);
  // Each echo's Send was accepted before its bytes reached us; a delivery
  // is counted only once its OnComplete has returned, which may be later.
  CHECK(metric_in(text, "  accepted", "recv") >= 10);
  CHECK(metric_in(text, "  accepted", "send") >= 10);
  CHECK(metric_in(text, "; completed", "recv") >= 1);
  CHECK(metric_in(text, "  delivered", "inline") >= 0);
  ::kill(h.pid, SIGTERM);
  CHECK(h.wait_exit() == 0);
  bool eof = false;
  const std::string rest = read_to_eof(h.out.fd, 2000, eof);
  INFO(rest);
  CHECK(rest.find("iocm-echo: metrics:") != std::string::npos);  // again, when it stops
  CHECK(rest.find("aborted") != std::string::npos);              // the accepts Unbind cancelled
  CHECK(rest.find("iocm-echo: stopped") != std::string::npos);
}

TEST_CASE("iocm-plaintext answers keep-alive, split and pipelined requests in order") {
  host_process h({IOCM_PLAINTEXT_PATH, "--port", "0"});
  h.wait_listening();
  const std::size_t one = reply_size(h.port);

  fd_guard c(connect_to(h.port));
  SUBCASE("keep-alive: one connection, many requests") {
    for (int i = 0; i < 100; ++i) {
      send_all(c.fd, get);
      const std::string r = read_exactly(c.fd, one);
      REQUIRE(r.size() == one);
      REQUIRE(r.starts_with(ok_reply_head));
    }
  }
  SUBCASE("a request split over several sends") {
    for (char ch : get) {
      send_all(c.fd, std::string_view(&ch, 1));
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const std::string r = read_exactly(c.fd, one);
    CHECK(r.size() == one);
    CHECK(count(r, "Hello, World!") == 1);
  }
  SUBCASE("pipelined: 500 requests in one burst (more than one reply buffer)") {
    std::string burst;
    for (int i = 0; i < 500; ++i) burst += get;
    send_all(c.fd, burst);
    const std::string r = read_exactly(c.fd, 500 * one);
    CHECK(r.size() == 500 * one);
    CHECK(count(r, ok_reply_head) == 500);
    CHECK(count(r, "Hello, World!") == 500);
  }
  SUBCASE("Connection: close is answered, then the connection closes") {
    send_all(c.fd, get + "GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + get);
    bool eof = false;
    const std::string r = read_to_eof(c.fd, 5000, eof);
    CHECK(eof);
    CHECK(count(r, "Hello, World!") == 2);  // the third request is after the close
  }
  SUBCASE("a bad request gets 400 and a close") {
    send_all(c.fd, "NONSENSE\r\n\r\n");
    bool eof = false;
    const std::string r = read_to_eof(c.fd, 5000, eof);
    CHECK(eof);
    CHECK(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
  }
  SUBCASE("a request with a body gets 400 and a close") {
    send_all(c.fd, "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    bool eof = false;
    const std::string r = read_to_eof(c.fd, 5000, eof);
    CHECK(eof);
    CHECK(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
  }
  ::kill(h.pid, SIGTERM);
  CHECK(h.wait_exit() == 0);
}

TEST_CASE("iocm-plaintext receiving ahead: keep-alive, split and pipelined requests in order") {
  host_process h({IOCM_PLAINTEXT_PATH, "--port", "0", "--receive-ahead"});
  h.wait_listening();
  const std::size_t one = reply_size(h.port);
  fd_guard c(connect_to(h.port));
  for (int i = 0; i < 100; ++i) {
    send_all(c.fd, get);
    REQUIRE(read_exactly(c.fd, one).starts_with(ok_reply_head));
  }
  for (char ch : get) {
    send_all(c.fd, std::string_view(&ch, 1));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  CHECK(count(read_exactly(c.fd, one), "Hello, World!") == 1);
  std::string burst;
  for (int i = 0; i < 500; ++i) burst += get;
  send_all(c.fd, burst);
  const std::string r = read_exactly(c.fd, 500 * one);
  CHECK(count(r, ok_reply_head) == 500);
  CHECK(count(r, "Hello, World!") == 500);
  ::kill(h.pid, SIGTERM);
  CHECK(h.wait_exit() == 0);
}

TEST_CASE("SIGTERM: requests already received are answered before the host exits") {
  host_process h({IOCM_PLAINTEXT_PATH, "--port", "0"});
  h.wait_listening();
  const std::size_t one = reply_size(h.port);
  // A burst small enough for one receive (15 KiB on loopback arrives as one
  // segment), whose replies (about 110 KiB) take several sends. The client's
  // receive buffer is small and it reads nothing until the signal has been
  // sent, so the host is still sending when the signal comes.
  constexpr int requests = 850;
  const std::string minimal = "GET / HTTP/1.1\r\n\r\n";
  std::string burst;
  for (int i = 0; i < requests; ++i) burst += minimal;
  REQUIRE(burst.size() < 16 * 1024);
  fd_guard idle(connect_to(h.port));
  send_all(idle.fd, get);  // answered: so it was accepted and now waits in Recv
  REQUIRE(read_exactly(idle.fd, one).size() == one);
  fd_guard busy(connect_to(h.port, 4096));
  send_all(busy.fd, burst);
  // The first reply bytes prove the burst arrived.
  pollfd p{busy.fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 10000) == 1);
  ::kill(h.pid, SIGTERM);
  bool eof = false;
  const std::string r = read_to_eof(busy.fd, 10000, eof);
  CHECK(eof);
  CHECK(r.size() == requests * one);
  CHECK(count(r, "Hello, World!") == requests);
  // The idle keep-alive connection is closed, not left hanging.
  const std::string nothing = read_to_eof(idle.fd, 10000, eof);
  CHECK(eof);
  CHECK(nothing.empty());
  CHECK(h.wait_exit() == 0);
  // No connection is accepted any more.
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(h.port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0);
  ::close(s);
}

TEST_CASE("a busy port or a bad argument fails cleanly, with a message") {
  for (const char* host : {IOCM_ECHO_PATH, IOCM_PLAINTEXT_PATH}) {
    CAPTURE(host);
    SUBCASE("busy port") {
      iocm_test::tcp_listener taken;
      host_process h({host, "--port", std::to_string(ntohs(taken.addr.sin_port))});
      CHECK(h.wait_exit() == 1);
      CHECK(h.stderr_text().find("Address already in use") != std::string::npos);
    }
    SUBCASE("port out of range") {
      host_process h({host, "--port", "70000"});
      CHECK(h.wait_exit() == 2);
      CHECK(h.stderr_text().find("bad value '70000' for --port") != std::string::npos);
    }
    SUBCASE("unknown option") {
      host_process h({host, "--frobnicate", "1"});
      CHECK(h.wait_exit() == 2);
      CHECK(h.stderr_text().find("unknown option '--frobnicate'") != std::string::npos);
    }
    SUBCASE("missing value") {
      host_process h({host, "--port"});
      CHECK(h.wait_exit() == 2);
      CHECK(h.stderr_text().find("option needs a value") != std::string::npos);
    }
    SUBCASE("bad address") {
      host_process h({host, "--address", "300.1.1.1"});
      CHECK(h.wait_exit() == 2);
    }
    SUBCASE("bad CPU list: the engine refuses it") {
      host_process h({host, "--port", "0", "--cpus", "0-x"});
      CHECK(h.wait_exit() == 1);
      CHECK(h.stderr_text().find("the engine could not start") != std::string::npos);
    }
  }
}
