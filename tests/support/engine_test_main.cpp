// The doctest runner of the engine tests. Each engine test program runs once
// per backend (IOCM_BACKEND=uring, =epoll; tests/CMakeLists.txt). Asked to
// test io_uring where it cannot be set up at all (a kernel without it,
// kernel.io_uring_disabled, a seccomp filter), the program skips (skip.h)
// before running anything.
//
// The probe creates a ring with liburing directly, not through the engine:
// where liburing can set up a ring and the engine cannot, the tests run and
// fail. Only "this machine cannot create the backend" is a skip.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "support/skip.h"

int main(int argc, char** argv) {
  const char* backend = std::getenv("IOCM_BACKEND");
  if (backend != nullptr && std::strcmp(backend, "uring") == 0) {
    if (const std::string why = iocm_test::io_uring_unavailable(); !why.empty())
      return iocm_test::skip("IOCM_BACKEND=uring, but io_uring cannot be set up here (" + why +
                             ")");
  }
  return doctest::Context(argc, argv).run();
}
