// iocm-topology: the placement tool behind `iocm-bench topology`
// (bench/cli/iocm_bench.py runs it as `iocm-topology topology ...`).
//
//   iocm-bench topology [--topology SPEC] [--cpus LIST] [--pollers N]
//                       [--placement compact|spread] [--max-threads N] [--live]
//
// `topology` prints the placement an engine would use here: which thread
// runs on which CPU and which memory sits on which NUMA node
// (docs/NUMA.md). The environment variables IOCM_CPUS, IOCM_POLLERS,
// IOCM_PLACEMENT and IOCM_TOPOLOGY apply as they do to an engine. With
// --live it starts an engine and reports where each shard's memory was
// actually found.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "iocm/engine.h"
#include "iocm/host_io.h"
#include "iocm/version.h"

namespace {

int usage(FILE* to) {
  std::fprintf(to,
               "usage: iocm-bench topology [--topology SPEC] [--cpus LIST] [--pollers N]\n"
               "                           [--placement compact|spread] [--max-threads N] "
               "[--live]\n"
               "  SPEC: synthetic:<hwloc description> (e.g. \"synthetic:pack:2 numa:2 core:4 "
               "pu:2\")\n"
               "        or xml:<lstopo XML export>; default: this machine\n"
               "  LIST: CPUs like 0-3,8\n");
  return to == stderr ? 2 : 0;
}

bool parse_u32(const char* s, std::uint32_t& out) {
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > 0xFFFFFFFFul || s[0] == '-') return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

struct no_handler final : iocm::completion_handler {
  void on_complete(std::uint32_t, std::uint32_t, iocm::hosting::OVERLAPPED*) noexcept override {}
};

int topology(int argc, char** argv) {
  iocm_config c;
  iocm_config_init(&c);
  bool live = false;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "iocm-bench topology: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--topology") {
      c.topology = value();
    } else if (a == "--cpus") {
      c.cpus = value();
    } else if (a == "--pollers" || a == "--max-threads") {
      const char* v = value();
      std::uint32_t n = 0;
      if (!parse_u32(v, n)) {
        std::fprintf(stderr, "iocm-bench topology: %s \"%s\" is not a number\n", argv[i - 1], v);
        return 2;
      }
      (a == "--pollers" ? c.pollers : c.max_threads) = n;
    } else if (a == "--placement") {
      const std::string_view v = value();
      if (v == "compact")
        c.placement = IOCM_PLACEMENT_COMPACT;
      else if (v == "spread")
        c.placement = IOCM_PLACEMENT_SPREAD;
      else {
        std::fprintf(stderr,
                     "iocm-bench topology: --placement \"%s\" is neither compact nor spread\n",
                     argv[i]);
        return 2;
      }
    } else if (a == "--live") {
      live = true;
    } else if (a == "-h" || a == "--help") {
      return usage(stdout);
    } else {
      std::fprintf(stderr, "iocm-bench topology: unknown argument \"%s\"\n", argv[i]);
      return usage(stderr);
    }
  }
  if (live) {
    no_handler handler;
    try {
      iocm::engine e(handler, c);
      // Threads report where they run once started: give them a moment.
      std::string text = e.placement();
      for (int i = 0; i < 200 && text.find("not started yet") != std::string::npos; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        text = e.placement();
      }
      std::fputs(text.c_str(), stdout);
    } catch (const std::system_error& ex) {
      std::fprintf(stderr, "iocm-bench topology: %s\n", ex.what());
      return 1;
    }
    return 0;
  }
  std::size_t needed = 0;
  iocm_describe_placement(&c, nullptr, 0, &needed);
  std::vector<char> text(needed + 1);
  const auto hr = iocm_describe_placement(&c, text.data(), text.size(), nullptr);
  if (hr != iocm::hosting::S_OK) {
    std::fprintf(stderr, "iocm-bench topology: %s\n", text.data());
    return 1;
  }
  std::fputs(text.data(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "topology") == 0) return topology(argc - 2, argv + 2);
  if (argc >= 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("iocm-bench %s\n", iocm_version());
    return 0;
  }
  if (argc >= 2 && (std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0))
    return usage(stdout);
  return usage(stderr);
}
