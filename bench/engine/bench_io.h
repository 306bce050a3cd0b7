// What the engine benchmarks and their peers share about the work: a cached
// file and its random offsets, loopback TCP connections, and the sizes.
// Every implementation of a scenario runs on these, so they do the same work.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <utility>
#include <vector>

namespace iocm_bench {

/// Queue depths of file_randread_qd<N>, and connections of echo_c<N>: set in
/// bench/CMakeLists.txt only, which gives iocm-bench the same lists.
#if !defined(IOCM_BENCH_FILE_DEPTHS) || !defined(IOCM_BENCH_ECHO_WIDTHS)
#error "IOCM_BENCH_FILE_DEPTHS and IOCM_BENCH_ECHO_WIDTHS come from bench/CMakeLists.txt"
#endif
inline constexpr int file_depths[] = {IOCM_BENCH_FILE_DEPTHS};
inline constexpr int echo_widths[] = {IOCM_BENCH_ECHO_WIDTHS};

/// Reads per benchmark iteration (every implementation).
inline constexpr int reads_per_iteration = 1 << 13;

/// A file of file_bytes in the page cache, unlinked: the reads measure the
/// engine, not the disk.
inline constexpr std::size_t file_bytes = 64u << 20, read_bytes = 4096;

struct cached_file {
  cached_file() {
    char path[] = "/tmp/iocm-bench-XXXXXX";
    fd = ::mkostemp(path, O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("mkostemp");
    ::unlink(path);
    std::vector<char> chunk(1 << 20, 'x');
    for (std::size_t off = 0; off < file_bytes; off += chunk.size())
      if (::pwrite(fd, chunk.data(), chunk.size(), static_cast<off_t>(off)) !=
          static_cast<ssize_t>(chunk.size()))
        throw std::runtime_error("pwrite");
  }
  ~cached_file() { ::close(fd); }
  int fd = -1;
};

/// Random 4 KiB-aligned offsets, the same sequence for every implementation.
struct offsets {
  std::uint64_t next() { return (rng() % (file_bytes / read_bytes)) * read_bytes; }
  std::mt19937_64 rng{42};
};

inline constexpr std::uint32_t echo_bytes = 64;
inline constexpr std::uint64_t round_trips_per_iteration = 4096;

/// Loopback TCP connections (client, server), Nagle off, blocking (the epoll
/// backend makes them non-blocking at Bind).
struct tcp_connections {
  explicit tcp_connections(int n) {
    const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        ::listen(listener, n) != 0)
      throw std::runtime_error("listen");
    for (int i = 0; i < n; ++i) {
      const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c < 0 || ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
        throw std::runtime_error("connect");
      const int s = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (s < 0) throw std::runtime_error("accept");
      const int one = 1;
      ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      pairs.push_back({c, s});
    }
    ::close(listener);
  }
  ~tcp_connections() {
    for (auto [c, s] : pairs) {
      ::close(c);
      ::close(s);
    }
  }
  std::vector<std::pair<int, int>> pairs;
};

}  // namespace iocm_bench
