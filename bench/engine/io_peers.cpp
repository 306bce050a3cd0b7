// file_randread_qd<N> and echo_c<N> on the event loops a host would
// otherwise use, each written the way its documentation shows, on one loop
// thread (CPU 1, as the plain liburing loop):
//   asio / asio_uring  Boost.Asio's io_context: async_read/async_write on
//                      tcp::socket, async_read_some_at on random_access_file.
//                      This file is built twice: with the default reactor
//                      (epoll; "asio", sockets only: Asio's files need
//                      io_uring) and with BOOST_ASIO_HAS_IO_URING and
//                      BOOST_ASIO_DISABLE_EPOLL ("asio_uring", its own
//                      program, since the two cannot share one).
//   libuv              uv_tcp_t with uv_read_start/uv_write, and uv_fs_read
//                      (libuv's thread pool) for files. Main program only.
// Same work as the engine's: the cached file and its offsets, 64-byte round
// trips where the server answers once it has all 64 bytes.
#include <benchmark/benchmark.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(BOOST_ASIO_HAS_IO_URING)
#include <boost/asio/random_access_file.hpp>
#define IOCM_ASIO_IMPL "asio_uring"
#else
#include <uv.h>
#define IOCM_ASIO_IMPL "asio"
#endif

#include "bench_io.h"
#include "bench_threads.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using iocm_bench::affinity_guard;
using iocm_bench::pin_to;
using namespace iocm_bench;

int loop_cpu() { return 1 % static_cast<int>(std::thread::hardware_concurrency()); }

// --- Asio --------------------------------------------------------------------

struct asio_echo_state {
  std::uint64_t trips = 0;
  std::size_t stopped = 0;
  bool stopping = false, failed = false;
};

struct asio_echo_conn {
  asio_echo_conn(asio::io_context& ctx, int c, int s, asio_echo_state& st)
      : client(ctx, tcp::v4(), ::dup(c)), server(ctx, tcp::v4(), ::dup(s)), state(st) {
    std::memset(client_buffer, 'e', echo_bytes);
  }
  void client_send() {
    asio::async_write(client, asio::buffer(client_buffer), [this](auto ec, std::size_t) {
      if (ec)
        state.failed = true;
      else
        client_recv();
    });
  }
  void client_recv() {
    asio::async_read(client, asio::buffer(client_buffer), [this](auto ec, std::size_t) {
      if (ec) {
        state.failed = true;
        return;
      }
      ++state.trips;
      if (state.stopping)
        ++state.stopped;
      else
        client_send();
    });
  }
  void server_recv() {
    asio::async_read(server, asio::buffer(server_buffer), [this](auto ec, std::size_t) {
      if (ec) {
        if (!state.stopping) state.failed = true;
        return;
      }
      server_send();
    });
  }
  void server_send() {
    asio::async_write(server, asio::buffer(server_buffer), [this](auto ec, std::size_t) {
      if (ec)
        state.failed = true;
      else
        server_recv();
    });
  }
  tcp::socket client, server;
  char client_buffer[echo_bytes], server_buffer[echo_bytes];
  asio_echo_state& state;
};

void echo_asio(benchmark::State& state, int width) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  pin_to(loop_cpu());
  tcp_connections conns(width);
  asio::io_context ctx(1);  // one thread: no locking inside Asio
  asio_echo_state st;
  std::vector<std::unique_ptr<asio_echo_conn>> cs;
  for (auto [c, s] : conns.pairs) cs.push_back(std::make_unique<asio_echo_conn>(ctx, c, s, st));
  for (auto& k : cs) {
    k->server_recv();
    k->client_send();
  }
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = st.trips + round_trips_per_iteration;
    while (st.trips < target && !st.failed) ctx.run_one();
  }
  cpu.stop();
  st.stopping = true;
  while (st.stopped < cs.size() && !st.failed) ctx.run_one();
  if (st.failed) state.SkipWithError("an echo operation failed");
  cpu.report(state, static_cast<std::int64_t>(st.trips));
}

#if defined(BOOST_ASIO_HAS_IO_URING)
/// depth reads in flight on one file; each completion issues the next.
struct asio_file_reads {
  asio_file_reads(asio::io_context& ctx, int fd, int depth)
      : file(ctx, ::dup(fd)), buffers(static_cast<std::size_t>(depth) * read_bytes) {}
  void read(std::size_t k) {
    ++submitted;
    file.async_read_some_at(where.next(), asio::buffer(buffers.data() + k * read_bytes, read_bytes),
                            [this, k](auto ec, std::size_t n) {
                              ++completed;
                              bytes += n;
                              if (ec)
                                failed = true;
                              else if (!stopping)
                                read(k);
                            });
  }
  asio::random_access_file file;
  std::vector<char> buffers;
  offsets where;
  std::uint64_t submitted = 0, completed = 0, bytes = 0;
  bool failed = false, stopping = false;
};

void file_randread_asio(benchmark::State& state, int depth) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  pin_to(loop_cpu());
  cached_file file;
  asio::io_context ctx(1);
  asio_file_reads r(ctx, file.fd, depth);
  for (std::size_t k = 0; k < static_cast<std::size_t>(depth); ++k) r.read(k);
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = r.completed + reads_per_iteration;
    while (r.completed < target && !r.failed) ctx.run_one();
  }
  cpu.stop();
  r.stopping = true;
  while (r.completed < r.submitted && !r.failed) ctx.run_one();
  if (r.failed || r.bytes != r.completed * read_bytes) state.SkipWithError("reads failed or short");
  cpu.report(state, static_cast<std::int64_t>(r.completed));
}
#endif

// --- libuv -------------------------------------------------------------------

#if !defined(BOOST_ASIO_HAS_IO_URING)

struct uv_echo_state {
  std::uint64_t trips = 0;
  std::size_t stopped = 0;
  bool stopping = false, failed = false;
};

/// One connection: the client writes 64 bytes and reads them back; the
/// server writes back once it has all 64.
struct uv_echo_conn {
  uv_tcp_t client, server;
  uv_write_t client_write, server_write;
  char client_buffer[echo_bytes], server_buffer[echo_bytes];
  std::uint32_t client_got = 0, server_got = 0;
  uv_echo_state* state = nullptr;

  void client_send() {
    uv_buf_t b = uv_buf_init(client_buffer, echo_bytes);
    if (uv_write(&client_write, reinterpret_cast<uv_stream_t*>(&client), &b, 1, nullptr) != 0)
      state->failed = true;
  }
  static void alloc_client(uv_handle_t* h, std::size_t, uv_buf_t* b) {
    auto* k = static_cast<uv_echo_conn*>(h->data);
    *b = uv_buf_init(k->client_buffer + k->client_got, echo_bytes - k->client_got);
  }
  static void alloc_server(uv_handle_t* h, std::size_t, uv_buf_t* b) {
    auto* k = static_cast<uv_echo_conn*>(h->data);
    *b = uv_buf_init(k->server_buffer + k->server_got, echo_bytes - k->server_got);
  }
  static void client_read(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
    auto* k = static_cast<uv_echo_conn*>(h->data);
    if (n < 0) {
      k->state->failed = true;
      return;
    }
    k->client_got += static_cast<std::uint32_t>(n);
    if (k->client_got < echo_bytes) return;
    k->client_got = 0;
    ++k->state->trips;
    if (k->state->stopping)
      ++k->state->stopped;
    else
      k->client_send();
  }
  static void server_read(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
    auto* k = static_cast<uv_echo_conn*>(h->data);
    if (n < 0) {
      if (!k->state->stopping) k->state->failed = true;
      return;
    }
    k->server_got += static_cast<std::uint32_t>(n);
    if (k->server_got < echo_bytes) return;
    k->server_got = 0;
    uv_buf_t b = uv_buf_init(k->server_buffer, echo_bytes);
    if (uv_write(&k->server_write, h, &b, 1, nullptr) != 0) k->state->failed = true;
  }
};

void echo_libuv(benchmark::State& state, int width) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  pin_to(loop_cpu());
  tcp_connections conns(width);
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_echo_state st;
  std::vector<uv_echo_conn> cs(conns.pairs.size());
  for (std::size_t i = 0; i < cs.size(); ++i) {
    uv_echo_conn& k = cs[i];
    k.state = &st;
    uv_tcp_init(&loop, &k.client);
    uv_tcp_init(&loop, &k.server);
    k.client.data = k.server.data = &k;
    std::memset(k.client_buffer, 'e', echo_bytes);
    if (uv_tcp_open(&k.client, ::dup(conns.pairs[i].first)) != 0 ||
        uv_tcp_open(&k.server, ::dup(conns.pairs[i].second)) != 0)
      st.failed = true;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&k.server), uv_echo_conn::alloc_server,
                  uv_echo_conn::server_read);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&k.client), uv_echo_conn::alloc_client,
                  uv_echo_conn::client_read);
    k.client_send();
  }
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = st.trips + round_trips_per_iteration;
    while (st.trips < target && !st.failed) uv_run(&loop, UV_RUN_ONCE);
  }
  cpu.stop();
  st.stopping = true;
  while (st.stopped < cs.size() && !st.failed) uv_run(&loop, UV_RUN_ONCE);
  for (auto& k : cs) {
    uv_close(reinterpret_cast<uv_handle_t*>(&k.client), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&k.server), nullptr);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (st.failed) state.SkipWithError("an echo operation failed");
  cpu.report(state, static_cast<std::int64_t>(st.trips));
}

struct uv_file_state {
  int fd = -1;
  offsets where;
  std::uint64_t submitted = 0, completed = 0, bytes = 0;
  bool stopping = false, failed = false;
  uv_loop_t* loop = nullptr;
};

struct uv_read_slot {
  uv_fs_t req;
  char buffer[read_bytes];
  uv_file_state* state;

  void issue() {
    uv_buf_t b = uv_buf_init(buffer, read_bytes);
    ++state->submitted;
    req.data = this;
    if (uv_fs_read(state->loop, &req, state->fd, &b, 1, static_cast<int64_t>(state->where.next()),
                   done) != 0)
      state->failed = true;
  }
  static void done(uv_fs_t* r) {
    auto* s = static_cast<uv_read_slot*>(r->data);
    uv_file_state& st = *s->state;
    ++st.completed;
    if (r->result > 0)
      st.bytes += static_cast<std::uint64_t>(r->result);
    else
      st.failed = true;
    uv_fs_req_cleanup(r);
    if (!st.stopping && !st.failed) s->issue();
  }
};

void file_randread_libuv(benchmark::State& state, int depth) {
  iocm_bench::cpu_meter cpu;
  affinity_guard keep;
  pin_to(loop_cpu());
  cached_file file;
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_file_state st;
  st.fd = file.fd;
  st.loop = &loop;
  std::vector<uv_read_slot> slots(static_cast<std::size_t>(depth));
  for (auto& s : slots) {
    s.state = &st;
    s.issue();
  }
  cpu.start();
  for (auto _ : state) {
    const std::uint64_t target = st.completed + reads_per_iteration;
    while (st.completed < target && !st.failed) uv_run(&loop, UV_RUN_ONCE);
  }
  cpu.stop();
  st.stopping = true;
  while (st.completed < st.submitted) uv_run(&loop, UV_RUN_ONCE);
  uv_loop_close(&loop);
  if (st.failed || st.bytes != st.completed * read_bytes)
    state.SkipWithError("reads failed or short");
  cpu.report(state, static_cast<std::int64_t>(st.completed));
}

#endif

const bool registered = [] {
  auto add = [](const std::string& name, auto&&... fn_and_args) {
    benchmark::RegisterBenchmark(name.c_str(), fn_and_args...)->UseRealTime()->MinTime(0.5);
  };
  for (const int qd : file_depths) {
    const std::string scenario = "engine/file_randread_qd" + std::to_string(qd) + "/";
#if defined(BOOST_ASIO_HAS_IO_URING)
    add(scenario + IOCM_ASIO_IMPL, file_randread_asio, qd);
#else
    add(scenario + "libuv", file_randread_libuv, qd);
#endif
  }
  for (const int width : echo_widths) {
    const std::string scenario = "engine/echo_c" + std::to_string(width) + "/";
    add(scenario + IOCM_ASIO_IMPL, echo_asio, width);
#if !defined(BOOST_ASIO_HAS_IO_URING)
    add(scenario + "libuv", echo_libuv, width);
#endif
  }
  return true;
}();

}  // namespace

#if defined(IOCM_PEERS_MAIN)
BENCHMARK_MAIN();
#endif
