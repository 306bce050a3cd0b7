// libFuzzer harness: each input is a program of hosting-ABI calls (ports,
// Bind/Unbind, every operation, Cancel, thread limits, resets of
// OVERLAPPEDs, Pump, bad arguments) run against a fresh engine over a few
// real kernel objects; the harness itself plays the sockets' peer (sends,
// drains, shuts down), between calls.
//
// The ledger (tests/support/op_ledger.h, one id per OVERLAPPED): every call that
// answered IOCM_E_IO_PENDING must get exactly one OnComplete, and a refused
// call none. It is checked when the engine has been released (which closes
// every port and delivers what was in flight), and any mismatch aborts,
// which libFuzzer reports with the input. Under AddressSanitizer and
// UndefinedBehaviorSanitizer (the fuzz preset) a memory error or undefined
// behaviour aborts too. At exit the ledger of every input together is
// written as one "[ledger]" line.
//
// Two modes, chosen by the input's first byte:
// - deterministic (IOCM_PUMPED): the engine starts no thread; every
//   OnComplete runs on the harness's one thread, inside a Pump, Close,
//   Unbind or Release the program makes (the harness checks the thread). A
//   program is then one sequence of calls and answers, the same on every
//   run as far as the kernel answers alike (socket pairs and a page-cached
//   file do), so a failing input replays exactly;
// - threaded: the engine's own poller and notifier threads, as a host sees
//   them; one input may take different interleavings on different runs.
//
// Completing at once: the program may opt a handle into
// IOCM_SKIP_COMPLETION_ON_SUCCESS; a transfer that then answers S_OK counts
// as not accepted, so an OnComplete for it would be unexpected.
//
// Chains: the program may start a chain on one of a few slots of their
// own: a Nop, a file Read or a socket Recv whose OnComplete submits the
// same again, up to a budget the input sets, as a runtime's continuation
// does. In a threaded engine that OnComplete mostly runs on the poller's
// thread, so the next operation goes straight into its ring; an input may
// also make one chain callback block for 30 ms, so that the ring monitor
// takes the ring over meanwhile (docs/ENGINE.md, "Delivery where the
// completion lands").
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "support/op_ledger.h"
#include "support/skip.h"

using namespace iocm::hosting;

namespace {

constexpr int slots = 16, sockets = 3, ports_max = 3;
constexpr int chains = 3;  // slots after the first `slots`, for chains only
constexpr std::uint32_t buffer_bytes = 256;

/// An OVERLAPPED with its host area (iocm::overlapped, as in the tests:
/// tests/support/overlapped.h), and the buffer of its operation.
struct slot : iocm::overlapped {
  unsigned char buffer[buffer_bytes]{};
};

[[noreturn]] void fail(const char* what, int index, long a, long b) {
  std::fprintf(stderr, "api_fuzz: %s (slot %d: %ld against %ld)\n", what, index, a, b);
  std::abort();
}

/// What a run did, in order: every answer and every completion, folded
/// (FNV-1a). In the deterministic mode an input gives the same trace on
/// every run; IOCM_FUZZ_TRACE=1 prints it (tests/fuzz/replay.cmake).
struct run_trace {
  std::uint64_t h = 0xcbf29ce484222325u;
  void mix(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 0x100000001b3u;
    }
  }
};

class runtime final : public ICLRIoCompletionManager {
 public:
  HRESULT QueryInterface(const IID&, void** p) override {
    *p = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    if (pumped && std::this_thread::get_id() != harness)
      fail("a pumped engine called OnComplete on a thread of its own", -1, 0, 0);
    // As integers: an OVERLAPPED from outside the ring must be reported,
    // and subtracting pointers into different objects is undefined.
    const auto at = reinterpret_cast<std::uintptr_t>(ov);
    const auto base = reinterpret_cast<std::uintptr_t>(ring);
    const std::uintptr_t d = at - base;  // wraps to a huge value below the ring
    if (d % sizeof(slot) != 0 || d / sizeof(slot) >= slots + chains)
      fail("OnComplete for an OVERLAPPED never submitted", -1, static_cast<long>(d), 0);
    const int i = static_cast<int>(d / sizeof(slot));
    if (bytes > buffer_bytes) fail("more bytes than the buffer holds", i, bytes, buffer_bytes);
    book.completed(static_cast<std::size_t>(i));
    trace.mix(static_cast<std::uint64_t>(i) << 40 ^ std::uint64_t{error} << 20 ^ bytes);
    if (i >= slots) next_in_chain(i);
    return S_OK;
  }

  /// The kinds a chain submits.
  enum chain_kind : unsigned { chain_nop, chain_read, chain_recv };
  /// From the harness: submits the first operation of a chain on chain slot
  /// c, unless one runs there already.
  void start_chain(unsigned c, chain_kind kind, HANDLE handle) {
    const int i = slots + static_cast<int>(c);
    if (running[c].load(std::memory_order_acquire)) return;
    kinds[c] = kind;
    handles[c] = handle;
    running[c].store(true, std::memory_order_relaxed);
    if (!book.answered(static_cast<std::size_t>(i), submit(i) == IOCM_E_IO_PENDING))
      running[c].store(false, std::memory_order_release);
  }
  void next_in_chain(int i) {
    const unsigned c = static_cast<unsigned>(i - slots);
    if (block_once.exchange(false, std::memory_order_relaxed))
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    // The budget counts every chain's next operations together.
    if (budget.fetch_sub(1, std::memory_order_relaxed) <= 0 ||
        !book.answered(static_cast<std::size_t>(i), submit(i) == IOCM_E_IO_PENDING))
      running[c].store(false, std::memory_order_release);  // the harness may start it again
  }
  HRESULT submit(int i) {
    const unsigned c = static_cast<unsigned>(i - slots);
    slot& s = ring[i];
    switch (kinds[c]) {
      case chain_read:
        s.ov.Offset = 0;
        return io->Read(handles[c], s.buffer, 64, &s.ov);
      case chain_recv:
        return io->Recv(handles[c], s.buffer, 64, &s.ov);
      default:
        return io->Nop(handles[c], &s.ov);
    }
  }

  slot* ring = nullptr;
  IIocmHostIo* io = nullptr;
  bool pumped = false;
  std::thread::id harness;
  iocm_test::op_ledger book{slots + chains};
  run_trace trace;
  // The chains: what each submits (set by the harness while it is not
  // running), whether it runs, and the input's budget for them.
  chain_kind kinds[chains] = {};
  HANDLE handles[chains] = {};
  std::atomic<bool> running[chains] = {};
  std::atomic<int> budget{0};
  std::atomic<bool> block_once{false};
};

/// Every input's ledger added up, written at exit.
struct all_inputs {
  iocm_test::op_ledger::tally sum;
  unsigned long inputs = 0, pumped = 0;
  void add(const iocm_test::op_ledger::tally& t, bool was_pumped) {
    sum += t;
    ++inputs;
    pumped += was_pumped ? 1 : 0;
  }
  ~all_inputs() {
    char name[96];
    std::snprintf(name, sizeof name, "api_fuzz, %lu inputs (%lu pumped)", inputs, pumped);
    iocm_test::op_ledger::write(name, sum, stdout);
  }
};

/// The input, read as a stream of small numbers; zeros once it runs out.
struct reader {
  const std::uint8_t* data;
  std::size_t size, at = 0;
  bool more() const { return at < size; }
  unsigned byte() { return at < size ? data[at++] : 0u; }
  unsigned below(unsigned n) { return byte() % n; }
};

int temp_file() {
  char path[] = "/tmp/iocm-fuzz-XXXXXX";
  const int fd = ::mkostemp(path, O_CLOEXEC);
  if (fd < 0) return -1;
  ::unlink(path);
  static const char text[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (int i = 0; i < 64; ++i)
    if (::write(fd, text, sizeof text - 1) < 0) break;
  return fd;
}

HANDLE as_handle(int fd) { return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd)); }

/// Whether io_uring can be set up here, asked once of liburing itself (not
/// of the engine). Where it cannot (a kernel without it, io_uring_disabled,
/// a seccomp filter), inputs for io_uring run on epoll, said once on stderr;
/// where it can, an engine that refuses io_uring is a failure.
bool uring_settable() {
  static const bool settable = [] {
    const std::string why = iocm_test::io_uring_unavailable();
    if (why.empty()) return true;
    std::fprintf(stderr,
                 "api_fuzz: io_uring cannot be set up here (%s); inputs for io_uring run on "
                 "epoll\n",
                 why.c_str());
    return false;
  }();
  return settable;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  static slot* ring = new slot[slots + chains];  // reused: every input starts it afresh below
  static runtime clr;
  static all_inputs total;
  clr.ring = ring;
  clr.book.reset();
  clr.trace = {};
  auto note = [&](long answer) { clr.trace.mix(static_cast<std::uint64_t>(answer)); };
  // bit 0: the backend; bit 1: pumped; bit 2: a chain callback blocks once
  // (threaded engines only: a pumped engine's callback blocks its only
  // thread); bits 3-5: the chains' budget, in eighths of 64.
  const unsigned mode = in.byte();
  clr.pumped = (mode & 2) != 0;
  clr.block_once.store((mode & 4) != 0 && !clr.pumped);
  clr.budget.store(static_cast<int>((mode >> 3) & 7) * 8);
  for (auto& r : clr.running) r.store(false);
  clr.harness = std::this_thread::get_id();

  iocm_config config;
  iocm_config_init(&config);
  config.pollers = 1;
  config.max_threads = 2;
  config.queue_capacity = 64;
  config.inbox_capacity = 64;
  config.notifier_spin = 16;
  config.backend = (mode & 1) == 0 ? IOCM_BACKEND_URING : IOCM_BACKEND_EPOLL;
  if (clr.pumped) config.flags = IOCM_PUMPED;
  IHostIoCompletionManager* manager = nullptr;
  if (config.backend == IOCM_BACKEND_URING && !uring_settable())
    config.backend = IOCM_BACKEND_EPOLL;
  if (const HRESULT hr = iocm_create_host_io_completion_manager(&config, &manager); hr != S_OK) {
    std::fprintf(stderr, "api_fuzz: creating a%s engine on %s failed (0x%08x)\n",
                 clr.pumped ? " pumped" : "",
                 config.backend == IOCM_BACKEND_URING ? "io_uring" : "epoll",
                 static_cast<unsigned>(hr));
    std::abort();
  }
  void* p = nullptr;
  if (manager->QueryInterface(IID_IIocmHostIo, &p) != S_OK) std::abort();
  auto* io = static_cast<IIocmHostIo*>(p);
  clr.io = io;
  if (manager->QueryInterface(IID_IIocmHostIo2, &p) != S_OK) std::abort();
  auto* io2 = static_cast<IIocmHostIo2*>(p);
  if (manager->SetCLRIoCompletionManager(&clr) != S_OK) std::abort();
  IIocmPump* pump = nullptr;
  if (clr.pumped) {
    if (manager->QueryInterface(IID_IIocmPump, &p) != S_OK) std::abort();
    pump = static_cast<IIocmPump*>(p);
  } else if (manager->QueryInterface(IID_IIocmPump, &p) != E_NOINTERFACE) {
    std::abort();
  }
  int pair[sockets][2];
  for (auto& s : pair)
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0) std::abort();
  const int file = temp_file();
  // Handles: the sockets' engine ends, the file, a descriptor never opened.
  const int handles[] = {pair[0][0], pair[1][0], pair[2][0], file, -1, 1 << 20};
  constexpr unsigned handle_count = sizeof handles / sizeof handles[0];
  HANDLE ports[ports_max] = {};

  for (auto* s = ring; s != ring + slots + chains; ++s) {
    s->ov = OVERLAPPED{};
    std::memset(s->host_area, 0, sizeof s->host_area);
    std::memset(s->buffer, 0, sizeof s->buffer);
    if (manager->InitializeHostOverlapped(&s->ov) != S_OK) std::abort();
  }
  auto ov_of = [&](unsigned k) -> OVERLAPPED* {
    if (k == slots) return nullptr;  // a null OVERLAPPED now and then
    return &ring[k % slots].ov;
  };
  auto count = [&](unsigned k, HRESULT hr) {
    note(hr);
    if (hr == IOCM_E_IO_PENDING && k >= slots) fail("a null OVERLAPPED was accepted", -1, 0, 0);
    if (k < slots) clr.book.answered(k, hr == IOCM_E_IO_PENDING);
  };

  for (int steps = 0; in.more() && steps < 64; ++steps) {
    const unsigned op = in.below(20);
    const unsigned k = in.below(slots + 1);
    const unsigned h = in.below(handle_count);
    const unsigned port_index = in.below(ports_max + 1);  // ports_max: the null port
    const HANDLE port = port_index < ports_max ? ports[port_index] : nullptr;
    const std::uint32_t length = in.below(2) == 0 ? in.byte() % (buffer_bytes + 1) : buffer_bytes;
    unsigned char* buffer = k < slots ? ring[k].buffer : nullptr;
    switch (op) {
      case 0:
        if (port_index < ports_max && ports[port_index] == nullptr)
          note(manager->CreateIoCompletionPort(&ports[port_index]));
        break;
      case 1:
        note(manager->CloseIoCompletionPort(port));  // also unknown and closed ports
        if (port_index < ports_max) ports[port_index] = nullptr;
        break;
      case 2:
        note(manager->Bind(port, as_handle(handles[h])));
        break;
      case 3:
        note(io->Unbind(as_handle(handles[h])));
        break;
      case 4:
        count(k, io->Recv(as_handle(handles[h]), buffer, length, ov_of(k)));
        break;
      case 5:
        count(k, io->Send(as_handle(handles[h]), buffer, length, ov_of(k)));
        break;
      case 6:
        if (k < slots) ring[k].ov.Offset = in.byte() * 7u;
        count(k, io->Read(as_handle(handles[h]), buffer, length, ov_of(k)));
        break;
      case 7:
        count(k, io->Nop(as_handle(handles[h]), ov_of(k)));
        break;
      case 8:
        count(k, io->Post(port, in.byte(), in.byte() % (buffer_bytes + 1), ov_of(k)));
        break;
      case 9:
        note(io->Cancel(as_handle(handles[h]), in.below(2) == 0 ? nullptr : ov_of(k)));
        break;
      case 10:
        note(manager->SetMaxThreads(in.byte() % 6));  // 0 is refused
        break;
      case 11:
        note(manager->SetMinThreads(in.byte() % 6));
        break;
      case 12:
        // A reset: refused while that OVERLAPPED is in flight.
        if (k < slots) note(manager->InitializeHostOverlapped(&ring[k].ov));
        break;
      case 13: {
        // The peer sends: completes receives on that socket.
        const unsigned s = h % sockets;
        const unsigned char bytes[64] = {};
        note(::send(pair[s][1], bytes, 1 + in.byte() % sizeof bytes, MSG_NOSIGNAL | MSG_DONTWAIT));
        break;
      }
      case 14: {
        // The peer drains what the engine sent.
        unsigned char sink[1024];
        note(::recv(pair[h % sockets][1], sink, sizeof sink, MSG_DONTWAIT));
        break;
      }
      case 15:
        // The peer shuts its side: receives end with 0 bytes, sends fail.
        note(::shutdown(pair[h % sockets][1], in.below(2) == 0 ? SHUT_WR : SHUT_RDWR));
        break;
      case 16:
        // A misaligned OVERLAPPED: refused with E_INVALIDARG.
        if (k < slots) {
          auto* odd = reinterpret_cast<OVERLAPPED*>(reinterpret_cast<char*>(&ring[k].ov) + 1);
          if (io->Post(ports[0], 0, 0, odd) == IOCM_E_IO_PENDING)
            fail("a misaligned OVERLAPPED was accepted", static_cast<int>(k), 0, 0);
        }
        break;
      case 18:
        // Completing at once, receiving ahead, accepting ahead on a handle,
        // in any mix, or not (an answer of S_OK is a transfer done on this
        // thread: no OnComplete may follow); 8 is a bit iocm does not know.
        note(io2->SetCompletionModes(as_handle(handles[h]), in.below(9)));
        break;
      case 17: {
        // A chain: a Nop or Read on the file, or a Recv on a socket.
        const auto kind = static_cast<runtime::chain_kind>(in.below(3));
        const int fd = kind == runtime::chain_recv ? pair[h % sockets][0] : file;
        clr.start_chain(k % chains, kind, as_handle(fd));
        break;
      }
      default: {
        // Let what is in flight come in (bounded: receives may wait for ever).
        DWORD available = 0;
        note(manager->GetAvailableThreads(&available));
        if (pump == nullptr) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          break;
        }
        DWORD delivered = 0;
        if (pump->Pump(in.below(2), &delivered) != S_OK) fail("Pump refused", -1, 0, 0);
        note(delivered);
        if (delivered > 64) fail("one Pump delivered past queue_capacity", -1, delivered, 64);
        break;
      }
    }
  }

  // Release closes every port (the default one too) and delivers every
  // operation still in flight, aborted; after it no OnComplete may run.
  io->Release();
  io2->Release();
  if (pump != nullptr) pump->Release();
  manager->Release();
  static const bool print_trace = std::getenv("IOCM_FUZZ_TRACE") != nullptr;
  if (print_trace && clr.pumped)
    std::printf("trace %016llx\n", static_cast<unsigned long long>(clr.trace.h));
  const iocm_test::op_ledger::tally t = clr.book.count();
  total.add(t, clr.pumped);
  if (!t.clean()) {
    clr.book.report("api_fuzz, this input", stderr);
    fail(t.lost != 0 ? "a completion was lost" : "a completion came twice or unasked", -1,
         static_cast<long>(t.completed), static_cast<long>(t.accepted));
  }
  for (auto& s : pair) {
    ::close(s[0]);
    ::close(s[1]);
  }
  if (file >= 0) ::close(file);
  return 0;
}
