// What the example hosts share: they play the runtime (implement
// ICLRIoCompletionManager) and drive a TCP server through iocm's hosting ABI
// only: a manager from iocm_create_host_io_completion_manager, a port, Bind,
// and the operations of IIocmHostIo. Their OVERLAPPEDs, each with the host
// area after it that GetHostOverlappedSize asks for, are iocm::overlapped
// (iocm/engine.h), and are given to InitializeHostOverlapped as a runtime
// does before their first use. Each connection runs one operation at a
// time: Recv, then the protocol turns the bytes it has into a reply, Send
// (repeated until every byte went), then Recv again.
//
// Shutdown (SIGINT or SIGTERM): the listener is unbound and closed, so no
// new connection comes; a connection waiting in Recv is cancelled; one that
// has received a request keeps going until its reply is sent, then closes.
// The process exits 0 once every connection is gone (or 1 after a
// ten-second grace period, saying how many were left).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>

#include "iocm/engine.h"  // iocm::overlapped
#include "iocm/host_io.h"

namespace iocm_host {

using namespace iocm::hosting;

/// An OVERLAPPED with the host area after it (iocm::overlapped), and what to
/// do when it ends. The OVERLAPPED comes first: OnComplete's pointer is the
/// operation's.
struct operation {
  iocm::overlapped overlapped;
  void (*done)(operation*, DWORD error, DWORD bytes) = nullptr;
  OVERLAPPED* ov() noexcept { return &overlapped.ov; }
};

inline HANDLE as_handle(int fd) { return reinterpret_cast<HANDLE>(static_cast<intptr_t>(fd)); }

/// Command-line options both hosts take.
struct options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 8080;
  std::uint32_t pollers = 0;  // 0: the engine's default
  std::uint32_t threads = 0;  // notifier ceiling; 0: the engine's default
  std::string cpus;           // empty: every CPU
  std::uint32_t backend = IOCM_BACKEND_AUTO;
  int accepts = 8;  // accepts in flight on the listener
  bool quiet = false;
  bool receive_ahead = false;  // IOCM_RECEIVE_AHEAD on every connection
  bool accept_ahead = false;   // IOCM_ACCEPT_AHEAD on the listener
  bool inline_all = false;     // IOCM_INLINE_ALL: pollers deliver everything
};

inline bool parse_number(const char* s, unsigned long max, unsigned long& out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtoul(s, &end, 10);
  return errno == 0 && *end == '\0' && out <= max;
}

/// Parses argv into o; on a bad argument prints why and the usage and
/// returns 2; on --help prints the usage and returns 0; else returns -1.
inline int parse_options(int argc, char** argv, const char* name, const char* what, options& o) {
  auto usage = [&](FILE* to) {
    std::fprintf(to,
                 "usage: %s [--address A] [--port N] [--pollers N] [--threads N] [--cpus LIST]\n"
                 "          [--backend auto|uring|epoll] [--accepts N] [--receive-ahead]\n"
                 "          [--accept-ahead] [--inline-all] [--quiet]\n"
                 "%s\n"
                 "  --address A   IPv4 address to listen on (default 127.0.0.1)\n"
                 "  --port N      TCP port; 0 picks a free one (default 8080)\n"
                 "  --pollers N   engine pollers (default: the engine's)\n"
                 "  --threads N   most notifier threads running OnComplete (default: the "
                 "engine's)\n"
                 "  --cpus LIST   CPUs the engine may use, e.g. 0-1 (default: all)\n"
                 "  --backend B   io_uring or epoll (default auto)\n"
                 "  --accepts N   accepts kept in flight, 1-1024 (default 8)\n"
                 "  --receive-ahead  let the engine receive ahead of each connection's Recvs\n"
                 "                (IOCM_RECEIVE_AHEAD: one multishot receive per connection)\n"
                 "  --accept-ahead   let the engine accept connections ahead of the Accepts\n"
                 "                (IOCM_ACCEPT_AHEAD: one multishot accept on the listener)\n"
                 "  --inline-all  pollers run every OnComplete themselves (IOCM_INLINE_ALL)\n"
                 "  --quiet       no line once listening\n"
                 "SIGUSR1 prints the engine's metrics; so does stopping (unless --quiet).\n"
                 "SIGINT or SIGTERM stops it: pending replies are sent, then it exits 0.\n",
                 name, what);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    }
    // The switches: options without a value.
    const std::pair<std::string_view, bool*> switches[] = {{"--quiet", &o.quiet},
                                                           {"--receive-ahead", &o.receive_ahead},
                                                           {"--accept-ahead", &o.accept_ahead},
                                                           {"--inline-all", &o.inline_all}};
    bool* on = nullptr;
    for (const auto& [flag, field] : switches)
      if (a == flag) on = field;
    if (on != nullptr) {
      *on = true;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s: %s\n", name,
                   a.starts_with("--") ? "option needs a value" : "unexpected argument");
      std::fprintf(stderr, "%s: offending argument '%s'\n", name, argv[i]);
      usage(stderr);
      return 2;
    }
    const char* v = argv[++i];
    unsigned long n = 0;
    bool ok = true;
    if (a == "--address") {
      in_addr probe{};
      ok = ::inet_pton(AF_INET, v, &probe) == 1;
      o.address = v;
    } else if (a == "--port") {
      ok = parse_number(v, 65535, n);
      o.port = static_cast<std::uint16_t>(n);
    } else if (a == "--pollers") {
      ok = parse_number(v, 1024, n);
      o.pollers = static_cast<std::uint32_t>(n);
    } else if (a == "--threads") {
      ok = parse_number(v, 4096, n);
      o.threads = static_cast<std::uint32_t>(n);
    } else if (a == "--accepts") {
      ok = parse_number(v, 1024, n) && n > 0;
      o.accepts = static_cast<int>(n);
    } else if (a == "--cpus") {
      o.cpus = v;
    } else if (a == "--backend") {
      const std::string_view b = v;
      if (b == "auto")
        o.backend = IOCM_BACKEND_AUTO;
      else if (b == "uring")
        o.backend = IOCM_BACKEND_URING;
      else if (b == "epoll")
        o.backend = IOCM_BACKEND_EPOLL;
      else
        ok = false;
    } else {
      std::fprintf(stderr, "%s: unknown option '%s'\n", name, argv[i - 1]);
      usage(stderr);
      return 2;
    }
    if (!ok) {
      std::fprintf(stderr, "%s: bad value '%s' for %s\n", name, v, argv[i - 1]);
      usage(stderr);
      return 2;
    }
  }
  return -1;
}

/// The runtime side: every completion goes to its operation's `done`.
struct runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID& iid, void** p) override {
    if (p == nullptr) return E_POINTER;
    *p = (iid == IID_IUnknown || iid == IID_ICLRIoCompletionManager) ? this : nullptr;
    return *p != nullptr ? S_OK : E_NOINTERFACE;
  }
  ULONG AddRef() override { return 1; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    auto* op = reinterpret_cast<operation*>(ov);
    op->done(op, error, bytes);
    return S_OK;
  }
};

/// A protocol turns received bytes into a reply. It has
///   static constexpr const char* name;
///   struct state {};                      // per connection
///   static reply answer(state&, buffer&); // consumes what it can from in
struct reply {
  const char* data = nullptr;
  std::uint32_t size = 0;
  bool close_after = false;  // close once it is sent (e.g. a bad request)
};

struct buffer {
  static constexpr std::uint32_t capacity = 16 * 1024;
  char bytes[capacity];
  std::uint32_t begin = 0, end = 0;  // unconsumed input: [begin, end)
};

template <class Protocol>
class server {
 public:
  explicit server(const options& o) : options_(o) {}

  /// Runs until a signal; returns the exit status.
  int run(const char* name) {
    name_ = name;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGUSR1);
    // Blocked before any thread starts, so every thread inherits the mask
    // and the signal waits for sigwait below.
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    if (!listen_socket()) return 1;
    if (!start_engine()) return 1;
    for (int i = 0; i < options_.accepts; ++i) {
      auto* a = new (std::nothrow) accept_op{};
      if (a != nullptr) {
        a->self = this;
        a->op.done = &server::accepted;
      }
      if (a == nullptr || FAILED(manager_->InitializeHostOverlapped(a->op.ov())) ||
          !post_accept(a)) {
        delete a;
        std::fprintf(stderr, "%s: could not start accepting\n", name_);
        return shutdown(1);
      }
    }
    if (!options_.quiet) {
      std::printf("%s: listening on %s:%u\n", name_, options_.address.c_str(), bound_port_);
    }
    std::fflush(stdout);
    for (int sig = SIGUSR1; sig == SIGUSR1;) {
      sigwait(&stop, &sig);
      if (sig == SIGUSR1) print_metrics();
    }
    return shutdown(0);
  }

 private:
  struct accept_op {
    operation op;
    HANDLE accepted = nullptr;
    server* self = nullptr;
  };
  struct connection {
    operation recv_op, send_op;
    server* self = nullptr;
    int fd = -1;
    typename Protocol::state proto{};
    buffer in;
    reply out;
    std::uint32_t sent = 0;
    connection *prev = nullptr, *next = nullptr;  // the live list, under mutex_
  };

  bool listen_socket() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener_ < 0) return fail("socket", errno);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(options_.port);
    ::inet_pton(AF_INET, options_.address.c_str(), &a.sin_addr);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return fail("bind", errno);
    if (::listen(listener_, 4096) != 0) return fail("listen", errno);
    socklen_t len = sizeof a;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    bound_port_ = ntohs(a.sin_port);
    return true;
  }

  bool fail(const char* call, int err) {
    std::fprintf(stderr, "%s: cannot listen on %s:%u: %s: %s\n", name_, options_.address.c_str(),
                 options_.port, call, std::strerror(err));
    return false;
  }

  bool start_engine() {
    iocm_config c;
    iocm_config_init(&c);
    c.pollers = options_.pollers;
    c.max_threads = options_.threads;
    c.backend = options_.backend;
    c.cpus = options_.cpus.empty() ? nullptr : options_.cpus.c_str();
    if (options_.inline_all) c.flags |= IOCM_INLINE_ALL;
    HRESULT hr = iocm_create_host_io_completion_manager(&c, &manager_);
    void* io = nullptr;
    if (SUCCEEDED(hr)) hr = manager_->QueryInterface(IID_IIocmHostIo2, &io);
    io_ = static_cast<IIocmHostIo2*>(io);
    DWORD area = 0;
    if (SUCCEEDED(hr)) hr = manager_->GetHostOverlappedSize(&area);
    if (SUCCEEDED(hr) && area > IOCM_HOST_OVERLAPPED_SIZE) hr = E_FAIL;
    if (SUCCEEDED(hr)) hr = manager_->SetCLRIoCompletionManager(&runtime_);
    if (SUCCEEDED(hr)) hr = manager_->CreateIoCompletionPort(&port_);
    if (SUCCEEDED(hr)) hr = manager_->Bind(port_, as_handle(listener_));
    if (SUCCEEDED(hr) && options_.accept_ahead)
      hr = io_->SetCompletionModes(as_handle(listener_), IOCM_ACCEPT_AHEAD);
    if (FAILED(hr)) {
      std::fprintf(stderr, "%s: the engine could not start: HRESULT 0x%08x\n", name_,
                   static_cast<unsigned>(hr));
      return false;
    }
    return true;
  }

  /// Submits an accept on a prepared accept_op (reused after each one).
  bool post_accept(accept_op* a) {
    outstanding_.fetch_add(1);
    if (io_->Accept(as_handle(listener_), &a->accepted, a->op.ov()) == IOCM_E_IO_PENDING)
      return true;
    release();
    return false;
  }

  static void accepted(operation* op, DWORD error, DWORD) {
    auto* a = reinterpret_cast<accept_op*>(op);
    server* s = a->self;
    if (error == ERROR_SUCCESS) s->open(static_cast<int>(reinterpret_cast<intptr_t>(a->accepted)));
    // Accept again unless stopping; a refusal here can only mean the
    // listener is going away.
    if (s->stopping_.load() || !s->post_accept(a)) delete a;
    s->release();
  }

  void open(int fd) {
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new (std::nothrow) connection{};
    if (c == nullptr || FAILED(manager_->Bind(port_, as_handle(fd))) ||
        (options_.receive_ahead &&
         FAILED(io_->SetCompletionModes(as_handle(fd), IOCM_RECEIVE_AHEAD))) ||
        FAILED(manager_->InitializeHostOverlapped(c->recv_op.ov())) ||
        FAILED(manager_->InitializeHostOverlapped(c->send_op.ov()))) {
      delete c;
      ::close(fd);
      return;
    }
    c->self = this;
    c->fd = fd;
    c->recv_op.done = &server::received;
    c->send_op.done = &server::sent;
    outstanding_.fetch_add(1);
    {
      std::lock_guard lock(mutex_);
      c->next = live_;
      if (live_ != nullptr) live_->prev = c;
      live_ = c;
    }
    receive(c);
  }

  void receive(connection* c) {
    buffer& in = c->in;
    if (in.begin == in.end) in.begin = in.end = 0;
    if (in.end == buffer::capacity && in.begin > 0) {  // make room at the back
      std::memmove(in.bytes, in.bytes + in.begin, in.end - in.begin);
      in.end -= in.begin;
      in.begin = 0;
    }
    if (in.end == buffer::capacity) {  // a request larger than the buffer
      close(c);
      return;
    }
    if (io_->Recv(as_handle(c->fd), in.bytes + in.end, buffer::capacity - in.end,
                  c->recv_op.ov()) != IOCM_E_IO_PENDING) {
      close(c);
      return;
    }
    // Shutdown cancels the receives it finds in flight; one submitted after
    // it looked must cancel itself (the store and this load are seq_cst).
    if (stopping_.load()) io_->Cancel(as_handle(c->fd), c->recv_op.ov());
  }

  static void received(operation* op, DWORD error, DWORD bytes) {
    auto* c =
        reinterpret_cast<connection*>(reinterpret_cast<char*>(op) - offsetof(connection, recv_op));
    if (error != ERROR_SUCCESS || bytes == 0) {  // closed, reset or cancelled
      c->self->close(c);
      return;
    }
    c->in.end += bytes;
    c->self->respond(c);
  }

  /// Answers what has arrived, or receives more.
  void respond(connection* c) {
    c->out = Protocol::answer(c->proto, c->in);
    c->sent = 0;
    if (c->out.size == 0) {
      if (c->out.close_after || stopping_.load())
        close(c);
      else
        receive(c);
      return;
    }
    send_rest(c);
  }

  void send_rest(connection* c) {
    if (io_->Send(as_handle(c->fd), c->out.data + c->sent, c->out.size - c->sent,
                  c->send_op.ov()) != IOCM_E_IO_PENDING)
      close(c);
  }

  static void sent(operation* op, DWORD error, DWORD bytes) {
    auto* c =
        reinterpret_cast<connection*>(reinterpret_cast<char*>(op) - offsetof(connection, send_op));
    server* s = c->self;
    if (error != ERROR_SUCCESS) {
      s->close(c);
      return;
    }
    c->sent += bytes;
    if (c->sent < c->out.size) {
      s->send_rest(c);
      return;
    }
    if (c->out.close_after) {
      s->close(c);
      return;
    }
    // More complete requests may be waiting (pipelining); answer them
    // before receiving. While stopping, only those already received are.
    s->respond(c);
  }

  void close(connection* c) {
    io_->Unbind(as_handle(c->fd));
    ::close(c->fd);
    {
      std::lock_guard lock(mutex_);
      if (c->prev != nullptr)
        c->prev->next = c->next;
      else
        live_ = c->next;
      if (c->next != nullptr) c->next->prev = c->prev;
    }
    delete c;
    release();
  }

  void release() {
    if (outstanding_.fetch_sub(1) == 1) {
      std::lock_guard lock(mutex_);
      drained_.notify_all();
    }
  }

  int shutdown(int status) {
    stopping_.store(true);
    if (manager_ != nullptr && io_ != nullptr) {
      io_->Unbind(as_handle(listener_));  // cancels the accepts in flight
      ::close(listener_);
      listener_ = -1;
      std::unique_lock lock(mutex_);
      for (connection* c = live_; c != nullptr; c = c->next)
        io_->Cancel(as_handle(c->fd), c->recv_op.ov());
      if (!drained_.wait_for(lock, std::chrono::seconds(10),
                             [&] { return outstanding_.load() == 0; })) {
        std::fprintf(stderr, "%s: %ld operations still in flight after 10 s; exiting\n", name_,
                     static_cast<long>(outstanding_.load()));
        std::_Exit(1);
      }
    }
    if (!options_.quiet && status == 0) print_metrics();
    if (io_ != nullptr) io_->Release();
    if (manager_ != nullptr) manager_->Release();
    if (listener_ >= 0) ::close(listener_);
    if (!options_.quiet && status == 0) std::printf("%s: stopped\n", name_);
    return status;
  }

  /// The engine's metrics (IIocmMetrics), a few lines on stdout.
  void print_metrics() {
    void* p = nullptr;
    if (manager_ == nullptr || FAILED(manager_->QueryInterface(IID_IIocmMetrics, &p))) return;
    auto* metrics = static_cast<IIocmMetrics*>(p);
    iocm_metrics m{};
    m.struct_size = sizeof m;
    const HRESULT hr = metrics->GetMetrics(&m);
    metrics->Release();
    if (FAILED(hr)) return;
    static const char* const kinds[IOCM_METRIC_KINDS] = {
        "read", "write", "recv", "send", "accept", "connect", "nop", "post", "aborted"};
    char accepted[256] = "", completed[256] = "", sizes[128] = "";
    std::size_t na = 0, nc = 0, nz = 0;
    for (int k = 0; k < IOCM_METRIC_KINDS; ++k) {
      if (m.accepted[k] != 0 && na < sizeof accepted)
        na += std::snprintf(accepted + na, sizeof accepted - na, " %s %llu", kinds[k],
                            static_cast<unsigned long long>(m.accepted[k]));
      if (m.completed[k] != 0 && nc < sizeof completed)
        nc += std::snprintf(completed + nc, sizeof completed - nc, " %s %llu", kinds[k],
                            static_cast<unsigned long long>(m.completed[k]));
    }
    for (int b = 0; b < IOCM_HARVEST_BUCKETS && nz < sizeof sizes; ++b)
      nz += std::snprintf(sizes + nz, sizeof sizes - nz, "%s%llu", b == 0 ? "" : " ",
                          static_cast<unsigned long long>(m.harvest_sizes[b]));
    std::printf(
        "%s: metrics: %u pollers, %u notifiers (%u asleep)\n"
        "  accepted%s; completed%s\n"
        "  delivered: inline %llu, by notifiers %llu, by a pump %llu\n"
        "  harvests %llu, by size 1|2-3|4-7|8-15|16-31|32-63|64-127|128+: %s\n"
        "  queue high-water %llu; wake-ups sent %llu, avoided %llu; ring take-overs %llu\n"
        "  kernel refusals: busy %llu, dropped %llu, no buffers %llu, other %llu\n",
        name_, m.pollers, m.notifiers, m.parked, na == 0 ? " nothing" : accepted,
        nc == 0 ? " nothing" : completed, static_cast<unsigned long long>(m.delivered_inline),
        static_cast<unsigned long long>(m.delivered_by_notifiers),
        static_cast<unsigned long long>(m.delivered_by_pump),
        static_cast<unsigned long long>(m.harvests), sizes,
        static_cast<unsigned long long>(m.queue_high_water),
        static_cast<unsigned long long>(m.wakeups_sent),
        static_cast<unsigned long long>(m.wakeups_avoided),
        static_cast<unsigned long long>(m.ring_takeovers),
        static_cast<unsigned long long>(m.kernel_refusals[IOCM_REFUSED_BUSY]),
        static_cast<unsigned long long>(m.kernel_refusals[IOCM_REFUSED_DROPPED]),
        static_cast<unsigned long long>(m.kernel_refusals[IOCM_REFUSED_NO_BUFFERS]),
        static_cast<unsigned long long>(m.kernel_refusals[IOCM_REFUSED_OTHER]));
    std::fflush(stdout);
  }

  options options_;
  const char* name_ = "";
  runtime runtime_;
  IHostIoCompletionManager* manager_ = nullptr;
  IIocmHostIo2* io_ = nullptr;
  HANDLE port_ = nullptr;
  int listener_ = -1;
  std::uint16_t bound_port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<long> outstanding_{0};  // accepts in flight + open connections
  std::mutex mutex_;
  std::condition_variable drained_;
  connection* live_ = nullptr;
};

/// The whole main of a host.
template <class Protocol>
int host_main(int argc, char** argv, const char* what) {
  options o;
  const int parsed = parse_options(argc, argv, Protocol::name, what, o);
  if (parsed >= 0) return parsed;
  server<Protocol> s(o);
  return s.run(Protocol::name);
}

}  // namespace iocm_host
