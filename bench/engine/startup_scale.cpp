// iocm-startup-scale: what an engine costs to start, hold and stop as its
// pollers grow, on a described machine (IOCM_TOPOLOGY's synthetic form), so
// that a 2-CPU box can start the engine a 128-core host would. For each
// poller count: the engine's creation and destruction time (median of the
// rounds), the threads it runs, and the resident memory it adds once every
// thread has started, in all and per poller added since the row before
// (the notifiers are as many in every row: the described machine's CPUs
// decide them).
//
// usage: iocm-startup-scale [--topology SPEC] [--pollers N,N,...] [--rounds N]
//                           [--backend uring|epoll] [--json]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "iocm/engine.h"

namespace {

struct no_handler final : iocm::completion_handler {
  void on_complete(std::uint32_t, std::uint32_t, iocm::hosting::OVERLAPPED*) noexcept override {}
};

/// A field of /proc/self/status, in its own unit (kB for VmRSS), or -1.
long status_field(const char* name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(name);
  while (std::getline(in, line))
    if (line.compare(0, n, name) == 0 && line.size() > n && line[n] == ':')
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
  return -1;
}

struct sample {
  double start_ms = 0, stop_ms = 0;
  long threads = 0, rss_kib = 0;
  std::uint32_t notifiers = 0;
};

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

sample measure(iocm_config c) {
  no_handler handler;
  sample s;
  const long rss_before = status_field("VmRSS");
  const long threads_before = status_field("Threads");
  auto t = std::chrono::steady_clock::now();
  {
    iocm::engine e(handler, c);
    s.start_ms = ms_since(t);
    // Every thread reports where it runs once started: wait for all of them,
    // so that their stacks and rings are counted.
    for (int i = 0; i < 2000 && e.placement().find("not started yet") != std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    s.rss_kib = status_field("VmRSS") - rss_before;
    s.threads = status_field("Threads") - threads_before;
    s.notifiers = e.metrics().notifiers;
    t = std::chrono::steady_clock::now();
  }
  s.stop_ms = ms_since(t);
  return s;
}

std::vector<unsigned> parse_list(const char* v) {
  std::vector<unsigned> out;
  std::stringstream in(v);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || n == 0 || n > 256) return {};
    out.push_back(static_cast<unsigned>(n));
  }
  return out;
}

int usage(FILE* to) {
  std::fprintf(to,
               "usage: iocm-startup-scale [--topology SPEC] [--pollers N,N,...] [--rounds N]\n"
               "                          [--backend uring|epoll] [--json]\n"
               "  SPEC: default synthetic:pack:2 numa:1 core:64 pu:1 (a 2 x 64-core host)\n"
               "  N: 1..256 each; default 1,2,4,8,16,32,64,128\n");
  return to == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string topology = "synthetic:pack:2 numa:1 core:64 pu:1";
  std::vector<unsigned> pollers = {1, 2, 4, 8, 16, 32, 64, 128};
  int rounds = 3;
  bool json = false;
  const char* backend = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--topology" && has_value) {
      topology = argv[++i];
    } else if (a == "--pollers" && has_value) {
      pollers = parse_list(argv[++i]);
      if (pollers.empty()) return usage(stderr);
    } else if (a == "--rounds" && has_value) {
      rounds = std::atoi(argv[++i]);
      if (rounds < 1 || rounds > 100) return usage(stderr);
    } else if (a == "--backend" && has_value) {
      backend = argv[++i];
    } else if (a == "--json") {
      json = true;
    } else if (a == "-h" || a == "--help") {
      return usage(stdout);
    } else {
      std::fprintf(stderr, "iocm-startup-scale: unknown argument \"%s\"\n", a.c_str());
      return usage(stderr);
    }
  }
  if (backend != nullptr) ::setenv("IOCM_BACKEND", backend, 1);

  if (json)
    std::printf("{\"topology\": \"%s\", \"rounds\": %d, \"results\": [", topology.c_str(), rounds);
  else
    std::printf(
        "topology: %s; median of %d rounds\n\n"
        "| pollers | notifiers | threads | start ms | stop ms | RSS MiB | KiB per added poller |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n",
        topology.c_str(), rounds);
  auto config_for = [&](unsigned n) {
    iocm_config c;
    iocm_config_init(&c);
    c.topology = topology.c_str();
    c.pollers = n;
    c.log = [](void*, std::uint32_t, const char*) {};  // the placement warning, once per engine
    return c;
  };
  {
    // One engine first, not counted: the process's own first allocations
    // (malloc's arenas, hwloc's topology) would land on the first row.
    try {
      (void)measure(config_for(pollers.front()));
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "iocm-startup-scale: %s\n", ex.what());
      return 1;
    }
  }
  double last_rss = 0;
  for (std::size_t k = 0; k < pollers.size(); ++k) {
    const iocm_config c = config_for(pollers[k]);
    std::vector<sample> runs;
    try {
      for (int r = 0; r < rounds; ++r) runs.push_back(measure(c));
    } catch (const std::exception& ex) {
      std::fprintf(stderr, "iocm-startup-scale: %u pollers: %s\n", pollers[k], ex.what());
      return 1;
    }
    auto median = [&](auto field) {
      std::vector<double> v;
      for (const sample& s : runs) v.push_back(static_cast<double>(field(s)));
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    const double start = median([](const sample& s) { return s.start_ms; });
    const double stop = median([](const sample& s) { return s.stop_ms; });
    const double rss = median([](const sample& s) { return s.rss_kib; });
    const double threads = median([](const sample& s) { return s.threads; });
    const double notifiers = median([](const sample& s) { return s.notifiers; });
    if (json)
      std::printf(
          "%s{\"pollers\": %u, \"notifiers\": %.0f, \"threads\": %.0f, \"start_ms\": %.2f, "
          "\"stop_ms\": %.2f, \"rss_kib\": %.0f}",
          k == 0 ? "" : ", ", pollers[k], notifiers, threads, start, stop, rss);
    else if (k == 0)
      std::printf("| %u | %.0f | %.0f | %.1f | %.1f | %.1f | |\n", pollers[k], notifiers, threads,
                  start, stop, rss / 1024.0);
    else
      std::printf("| %u | %.0f | %.0f | %.1f | %.1f | %.1f | %.0f |\n", pollers[k], notifiers,
                  threads, start, stop, rss / 1024.0,
                  (rss - last_rss) / (static_cast<double>(pollers[k]) - pollers[k - 1]));
    last_rss = rss;
    std::fflush(stdout);
  }
  if (json) std::printf("]}\n");
  return 0;
}
