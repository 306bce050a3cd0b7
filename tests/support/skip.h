// Skipping what cannot exist here. A test program skips only when this
// machine cannot provide what it is asked to test, never on a failure: it
// prints one line starting "SKIPPED:" that says why (scripts/skip-summary
// reads it) and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE,
// tests/CMakeLists.txt), as liburing's own tests do.
#pragma once

#include <liburing.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace iocm_test {

/// The exit status of a skipped test program.
inline constexpr int skip_exit_code = 77;

/// Prints "SKIPPED: <why>" and returns skip_exit_code, for main to return.
inline int skip(const std::string& why) {
  std::printf("SKIPPED: %s\n", why.c_str());
  return skip_exit_code;
}

/// Why io_uring cannot be set up here (a kernel without it,
/// kernel.io_uring_disabled, a seccomp filter), e.g. "io_uring_queue_init:
/// Operation not permitted"; empty when it can. It asks liburing itself,
/// not the engine: where liburing can set up a ring and the engine cannot,
/// that is a failure, not a reason to skip.
inline std::string io_uring_unavailable() {
  io_uring ring{};
  const int r = io_uring_queue_init(2, &ring, 0);
  if (r < 0) return std::string("io_uring_queue_init: ") + std::strerror(-r);
  io_uring_queue_exit(&ring);
  return {};
}

}  // namespace iocm_test
