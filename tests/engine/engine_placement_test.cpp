// The engine under placement (docs/NUMA.md), black-box: engines planned on
// synthetic machines larger than this one run correctly with one warning;
// shards without notifiers of their own are drained; the environment
// variables work and bad values are refused with a message naming them.
#include <doctest/doctest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "iocm/engine.h"
#include "iocm/host_io.h"

using namespace iocm;
using hosting::DWORD;
using hosting::HRESULT;

namespace {

constexpr const char* two_by_two = "synthetic:pack:2 numa:2 core:4 pu:2";

/// Counts completions per OVERLAPPED: the ledger of exactly-once delivery.
struct ledger final : completion_handler {
  explicit ledger(std::size_t n) : hits(n) {}
  void on_complete(std::uint32_t error, std::uint32_t, hosting::OVERLAPPED* ov) noexcept override {
    const auto i = static_cast<std::size_t>(
        ov->hEvent != nullptr ? reinterpret_cast<std::uintptr_t>(ov->hEvent) - 1 : hits.size());
    if (i < hits.size()) hits[i].fetch_add(1);
    if (error != 0) errors.fetch_add(1);
    done.fetch_add(1);
  }
  bool wait_for(std::size_t n) {
    for (int i = 0; i < 20000 && done.load() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return done.load() >= n;
  }
  std::vector<std::atomic<int>> hits;
  std::atomic<std::size_t> done{0}, errors{0};
};

/// Collects what the engine reports through the log callback.
struct log_sink {
  std::mutex mutex;
  std::vector<std::pair<std::uint32_t, std::string>> lines;
  static void callback(void* context, std::uint32_t level, const char* message) {
    auto* self = static_cast<log_sink*>(context);
    std::lock_guard lock(self->mutex);
    self->lines.emplace_back(level, message);
  }
  std::size_t count(std::uint32_t level) {
    std::lock_guard lock(mutex);
    return static_cast<std::size_t>(
        std::count_if(lines.begin(), lines.end(), [&](const auto& l) { return l.first == level; }));
  }
  std::string all() {
    std::lock_guard lock(mutex);
    std::string s;
    for (const auto& l : lines) s += l.second + "\n";
    return s;
  }
};

engine_config logged(log_sink& sink) {
  engine_config c = default_engine_config();
  c.log = &log_sink::callback;
  c.log_context = &sink;
  return c;
}

/// Sets an environment variable for one scope.
struct scoped_env {
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~scoped_env() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }
  const char* name_;
  std::string old_;
  bool had_ = false;
};

/// Whether this machine could apply every CPU and node of two_by_two.
bool machine_covers_two_by_two() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return false;
  for (int c = 0; c < 32; ++c)
    if (!CPU_ISSET(c, &set)) return false;
  return ::access("/sys/devices/system/node/node3", F_OK) == 0;
}

/// Binds `fds` descriptors (spread round-robin over the pollers), submits
/// `per_thread` nops from each of `threads` threads plus as many posts, and
/// waits until all have completed (the OVERLAPPEDs live until then).
void run_ledger(engine& e, ledger& l, unsigned fds, unsigned threads, unsigned per_thread) {
  std::vector<int> handles;
  for (unsigned i = 0; i < fds; ++i) {
    const int fd = ::eventfd(0, EFD_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE_FALSE(e.bind(fd));
    handles.push_back(fd);
  }
  const port_handle port = e.create_port();
  const std::size_t total = std::size_t{threads} * per_thread * 2;
  REQUIRE(l.hits.size() == total);
  auto ovs = std::make_unique<overlapped[]>(total);
  std::vector<std::thread> workers;
  std::atomic<std::size_t> refused{0};
  for (unsigned t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (unsigned i = 0; i < per_thread; ++i) {
        const std::size_t k = (std::size_t{t} * per_thread + i) * 2;
        ovs[k].ov.hEvent = reinterpret_cast<hosting::HANDLE>(k + 1);
        ovs[k + 1].ov.hEvent = reinterpret_cast<hosting::HANDLE>(k + 2);
        if (e.nop(handles[(t + i) % handles.size()], ovs[k])) refused.fetch_add(1);
        if (e.post(port, 0, 7, ovs[k + 1])) refused.fetch_add(1);
      }
    });
  for (auto& w : workers) w.join();
  CHECK(refused.load() == 0);
  REQUIRE(l.wait_for(total));
  for (int fd : handles) {
    CHECK_FALSE(e.unbind(fd));
    ::close(fd);
  }
}

}  // namespace

TEST_CASE("a synthetic machine larger than this one: one warning, nothing lost") {
  log_sink sink;
  engine_config c = logged(sink);
  c.topology = two_by_two;
  c.max_threads = 8;
  constexpr unsigned threads = 4, per_thread = 5000;
  ledger l(std::size_t{threads} * per_thread * 2);
  {
    engine e(l, c);
    CHECK(e.stats().pollers == 16);  // one per core of the described machine
    CHECK(e.stats().shards == 4);    // one per NUMA node
    CHECK(sink.count(IOCM_LOG_ERROR) == 0);
    if (machine_covers_two_by_two()) {
      CHECK(sink.count(IOCM_LOG_WARNING) == 0);
    } else {
      CHECK(sink.count(IOCM_LOG_WARNING) == 1);
      CHECK(sink.all().find("cannot be fully applied") != std::string::npos);
    }
    run_ledger(e, l, 16, threads, per_thread);
    const std::string table = e.placement();
    CHECK(table.find("shard 3: NUMA node 3") != std::string::npos);
    // Poller 1 is planned on CPU 16, which a small machine lacks.
    if (!machine_covers_two_by_two())
      CHECK(table.find("poller 1 found not pinned") != std::string::npos);
    CHECK(table.find("notifier 7:") != std::string::npos);
  }
  std::size_t wrong = 0;
  for (auto& h : l.hits) wrong += h.load() == 1 ? 0 : 1;
  CHECK(wrong == 0);
  CHECK(l.errors.load() == 0);
  CHECK(sink.count(IOCM_LOG_WARNING) <= 1);  // nothing more after creation
}

TEST_CASE("shards with no notifier of their own are drained by stealing") {
  log_sink sink;
  engine_config c = logged(sink);
  c.topology = two_by_two;
  c.pollers = 4;  // spread: one per node, so four shards
  c.min_threads = 1;
  c.max_threads = 1;  // the only notifier lives on shard 0
  constexpr unsigned threads = 2, per_thread = 3000;
  ledger l(std::size_t{threads} * per_thread * 2);
  {
    engine e(l, c);
    REQUIRE(e.stats().shards == 4);
    run_ledger(e, l, 4, threads, per_thread);  // one descriptor per poller, so per shard
  }
  std::size_t wrong = 0;
  for (auto& h : l.hits) wrong += h.load() == 1 ? 0 : 1;
  CHECK(wrong == 0);
}

TEST_CASE("IOCM_POLLERS, IOCM_PLACEMENT, IOCM_CPUS and IOCM_TOPOLOGY shape the engine") {
  ledger l(0);
  log_sink sink;
  {
    scoped_env t("IOCM_TOPOLOGY", two_by_two);
    scoped_env p("IOCM_POLLERS", "3");
    scoped_env m("IOCM_PLACEMENT", "compact");
    engine e(l, logged(sink));
    CHECK(e.stats().pollers == 3);
    CHECK(e.stats().shards == 1);  // compact: node 0's cores first
  }
  {
    scoped_env t("IOCM_TOPOLOGY", two_by_two);
    scoped_env cpus("IOCM_CPUS", "16-31");
    engine e(l, logged(sink));
    CHECK(e.stats().pollers == 8);  // the cores of nodes 2 and 3
    CHECK(e.stats().shards == 2);
    CHECK(e.placement().find("shard 0: NUMA node 2") != std::string::npos);
  }
  {
    // Fields set in the config win over the environment.
    scoped_env p("IOCM_POLLERS", "not a number");
    scoped_env cpus("IOCM_CPUS", "x");
    engine_config c = logged(sink);
    c.pollers = 2;
    c.cpus = "0";
    engine e(l, c);
    CHECK(e.stats().pollers == 2);
  }
  CHECK(sink.count(IOCM_LOG_ERROR) == 0);
}

TEST_CASE("bad placement values are refused with a message naming the value") {
  struct bad_case {
    const char* variable;
    const char* value;
    const char* expected;  // in the message
  };
  const bad_case cases[] = {
      {"IOCM_CPUS", "0-3,x", "IOCM_CPUS=\"0-3,x\" has \"x\""},
      {"IOCM_CPUS", "", "IOCM_CPUS=\"\" is empty"},
      {"IOCM_CPUS", "4000-4001", "IOCM_CPUS=\"4000-4001\" names CPU 4000-4001"},
      {"IOCM_POLLERS", "0", "IOCM_POLLERS=\"0\""},
      {"IOCM_POLLERS", "257", "IOCM_POLLERS=\"257\""},
      {"IOCM_POLLERS", "two", "IOCM_POLLERS=\"two\""},
      {"IOCM_PLACEMENT", "tight", "IOCM_PLACEMENT=\"tight\""},
      {"IOCM_TOPOLOGY", "synthetic:pack:x", "IOCM_TOPOLOGY=\"synthetic:pack:x\""},
      {"IOCM_TOPOLOGY", "xml:/nonexistent/machine.xml", "IOCM_TOPOLOGY=\"xml:/nonexistent"},
      {"IOCM_TOPOLOGY", "lstopo", "IOCM_TOPOLOGY=\"lstopo\" is neither"},
      {"IOCM_BACKEND", "io_uring", "IOCM_BACKEND=\"io_uring\" is not"},
  };
  for (const auto& bc : cases) {
    CAPTURE(bc.variable);
    CAPTURE(bc.value);
    scoped_env env(bc.variable, bc.value);
    // The COM face: E_INVALIDARG, and the message through the log callback.
    log_sink sink;
    engine_config c = logged(sink);
    hosting::IHostIoCompletionManager* m = nullptr;
    CHECK(iocm_create_host_io_completion_manager(&c, &m) == hosting::E_INVALIDARG);
    CHECK(m == nullptr);
    CHECK(sink.count(IOCM_LOG_ERROR) == 1);
    CHECK(sink.all().find(bc.expected) != std::string::npos);
    // The C++ face: the exception's message names it too.
    ledger l(0);
    try {
      engine e(l, logged(sink));
      FAIL("the engine was created");
    } catch (const std::system_error& ex) {
      CHECK(ex.code().value() == static_cast<int>(hosting::E_INVALIDARG));
      CHECK(std::string(ex.what()).find(bc.expected) != std::string::npos);
    }
  }
  // Config fields are checked the same way.
  log_sink sink;
  engine_config c = logged(sink);
  c.placement = 7;
  hosting::IHostIoCompletionManager* m = nullptr;
  CHECK(iocm_create_host_io_completion_manager(&c, &m) == hosting::E_INVALIDARG);
  CHECK(sink.all().find("placement 7") != std::string::npos);
  c = logged(sink);
  c.cpus = "1-0";
  CHECK(iocm_create_host_io_completion_manager(&c, &m) == hosting::E_INVALIDARG);
  CHECK(sink.all().find("cpus=\"1-0\"") != std::string::npos);
}

TEST_CASE("a described machine too large to build is refused at once, naming the limit") {
  // hwloc would spend minutes and more building it (docs/NUMA.md, the limits).
  constexpr const char* huge = "synthetic:pack:1000 numa:1000 core:1000 pu:1000";
  const std::string expected =
      "describes 1000000000000 CPUs (the product of its arities), above "
      "the limit of 4096";
  const auto start = std::chrono::steady_clock::now();
  {
    scoped_env env("IOCM_TOPOLOGY", huge);
    log_sink sink;
    engine_config c = logged(sink);
    hosting::IHostIoCompletionManager* m = nullptr;
    CHECK(iocm_create_host_io_completion_manager(&c, &m) == hosting::E_INVALIDARG);
    CHECK(m == nullptr);
    CHECK(sink.all().find(std::string("IOCM_TOPOLOGY=\"") + huge + "\" " + expected) !=
          std::string::npos);
  }
  log_sink sink;
  engine_config c = logged(sink);
  c.topology = huge;
  ledger l(0);
  try {
    engine e(l, c);
    FAIL("the engine was created");
  } catch (const std::system_error& ex) {
    CHECK(ex.code().value() == static_cast<int>(hosting::E_INVALIDARG));
    CHECK(std::string(ex.what()).find(std::string("topology=\"") + huge + "\" " + expected) !=
          std::string::npos);
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("a config of the first layout (0.1.0, without the placement fields) still works") {
  // What a program built against the 0.1.0 header has: 44 bytes, then
  // whatever follows them in its memory.
  alignas(iocm_config) unsigned char bytes[sizeof(iocm_config) + 16];
  std::memset(bytes, 0xAB, sizeof bytes);
  auto* c = reinterpret_cast<iocm_config*>(bytes);
  iocm_config_init_sized(c, IOCM_CONFIG_SIZE_V1);
  CHECK(c->struct_size == IOCM_CONFIG_SIZE_V1);
  CHECK(c->ring_entries == 256);
  std::size_t touched = 0;
  for (std::size_t i = IOCM_CONFIG_SIZE_V1; i < sizeof bytes; ++i) touched += bytes[i] != 0xAB;
  CHECK(touched == 0);  // nothing written past its layout
  c->pollers = 1;
  // The bytes after the first layout (0xAB...: a wild cpus pointer) are not read.
  hosting::IHostIoCompletionManager* m = nullptr;
  REQUIRE(iocm_create_host_io_completion_manager(c, &m) == hosting::S_OK);
  m->Release();
  // An unknown layout: nothing is written, creation refuses it.
  std::memset(bytes, 0xAB, sizeof bytes);
  iocm_config_init_sized(c, IOCM_CONFIG_SIZE_V1 + 4);
  touched = 0;
  for (unsigned char b : bytes) touched += b != 0xAB;
  CHECK(touched == 0);
  iocm_config full;
  iocm_config_init(&full);
  CHECK(full.struct_size == sizeof(iocm_config));
  full.struct_size = IOCM_CONFIG_SIZE_V1 + 4;
  CHECK(iocm_create_host_io_completion_manager(&full, &m) == hosting::E_INVALIDARG);
}

TEST_CASE("backend auto: io_uring when a ring can be created, else epoll with one reason") {
  scoped_env env("IOCM_BACKEND", "auto");
  ledger l(0);
  log_sink sink;
  engine e(l, logged(sink));
  const std::uint32_t backend = e.stats().backend;
  REQUIRE((backend == IOCM_BACKEND_URING || backend == IOCM_BACKEND_EPOLL));
  if (backend == IOCM_BACKEND_URING) {
    CHECK(sink.count(IOCM_LOG_INFO) == 0);
  } else {
    CHECK(sink.count(IOCM_LOG_INFO) == 1);
    CHECK(sink.all().find("using the epoll backend: io_uring_setup failed") != std::string::npos);
  }
  // The config field wins over the environment.
  engine_config c = logged(sink);
  c.backend = IOCM_BACKEND_EPOLL;
  engine forced(l, c);
  CHECK(forced.stats().backend == IOCM_BACKEND_EPOLL);
  CHECK(forced.stats().ring_setup == 0);
}

TEST_CASE("iocm_describe_placement shows the plan without creating an engine") {
  engine_config c = default_engine_config();
  c.topology = two_by_two;
  c.max_threads = 4;
  std::size_t needed = 0;
  char small[16];
  CHECK(iocm_describe_placement(&c, small, sizeof small, &needed) ==
        hosting::HRESULT_FROM_WIN32(hosting::ERROR_INSUFFICIENT_BUFFER));
  CHECK(std::string(small).size() == sizeof small - 1);
  REQUIRE(needed > sizeof small);
  std::string text(needed, '\0');
  REQUIRE(iocm_describe_placement(&c, text.data(), text.size(), nullptr) == hosting::S_OK);
  text.resize(needed - 1);
  CHECK(text.find("topology: synthetic:pack:2 numa:2 core:4 pu:2") != std::string::npos);
  CHECK(text.find("16 pollers, 4 shards, 4 notifiers") != std::string::npos);
  CHECK(text.find("poller 15: CPU 30") != std::string::npos);
  CHECK(text.find("notifier 3: CPU") != std::string::npos);
  CHECK(iocm_describe_placement(&c, nullptr, 4, nullptr) == hosting::E_POINTER);
  c.cpus = "x";
  REQUIRE(iocm_describe_placement(&c, text.data(), text.size(), nullptr) == hosting::E_INVALIDARG);
  CHECK(std::string(text.c_str()).find("cpus=\"x\"") != std::string::npos);
}

TEST_CASE("on this machine each shard's memory is found on its node") {
  ledger l(0);
  log_sink sink;
  engine e(l, logged(sink));
  CHECK(sink.count(IOCM_LOG_WARNING) == 0);
  const std::string table = e.placement();
  CHECK(table.find("topology: this machine") != std::string::npos);
  // Every "shard N: NUMA node K" line has a matching "memory found on node K".
  std::size_t at = 0, shards = 0;
  while ((at = table.find("shard ", at)) != std::string::npos) {
    const std::size_t line_end = table.find('\n', at);
    const std::string line = table.substr(at, line_end - at);
    at = line_end;
    const std::size_t node_at = line.find("NUMA node ");
    if (node_at == std::string::npos) continue;
    const std::string node = line.substr(node_at + 10, line.find(',', node_at) - node_at - 10);
    const std::string shard = line.substr(6, line.find(':') - 6);
    CAPTURE(table);
    CHECK(table.find("shard " + shard + " memory found on node " + node + "\n") !=
          std::string::npos);
    ++shards;
  }
  CHECK(shards == e.stats().shards);
  // Each thread, once started, finds itself pinned where the plan put it.
  std::string live = e.placement();
  for (int i = 0; i < 2000 && live.find("not started yet") != std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    live = e.placement();
  }
  CAPTURE(live);
  CHECK(live.find("not started yet") == std::string::npos);
  CHECK(live.find("found not pinned") == std::string::npos);
  CHECK(live.find("poller 0 found pinned to CPU") != std::string::npos);
}
