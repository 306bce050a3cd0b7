// The composition unit: the engine core asks for a poller, platform/ decides
// which backend builds it (engine_core::prepare chose it: io_uring when a
// probe really creates a ring, epoll otherwise or when asked).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "os.h"
#include "pollers.h"

namespace iocm::detail {

int probe_uring() noexcept;  // uring_poller.cpp

std::unique_ptr<poller> make_poller(poller_setup setup) {
  if (setup.backend == IOCM_BACKEND_EPOLL) return make_epoll_poller(std::move(setup));
  return make_uring_poller(std::move(setup));
}

namespace os {

bool uring_available(std::string& why) {
  const int r = probe_uring();
  if (r == 0) return true;
  why = "io_uring_setup failed: " + std::string(std::strerror(-r));
  std::ifstream f("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (f >> disabled && disabled != 0)
    why += disabled == 2 ? " (kernel.io_uring_disabled = 2: disabled for everyone)"
                         : " (kernel.io_uring_disabled = 1: only for io_uring_group members)";
  else if (r == -ENOSYS)
    why += " (kernel without io_uring, without IORING_FEAT_NODROP, or a seccomp filter)";
  else if (r == -EPERM)
    why += " (refused: a seccomp filter or a security module)";
  return false;
}

}  // namespace os
}  // namespace iocm::detail
