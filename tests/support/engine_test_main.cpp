// The doctest runner of the engine tests. Each engine test program runs once
// per backend (IOCM_BACKEND=uring, =epoll; tests/CMakeLists.txt). Asked to
// test io_uring where it cannot be set up at all (a kernel without it,
// kernel.io_uring_disabled, a seccomp filter), the program exits 77 before
// running anything, which CTest reports as skipped (SKIP_RETURN_CODE), as
// liburing's own tests do.
//
// The probe creates a ring with liburing directly, not through the engine:
// where liburing can set up a ring and the engine cannot, the tests run and
// fail. Only "this machine cannot create the backend" is a skip.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <liburing.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  const char* backend = std::getenv("IOCM_BACKEND");
  if (backend != nullptr && std::strcmp(backend, "uring") == 0) {
    io_uring ring{};
    const int r = io_uring_queue_init(2, &ring, 0);
    if (r < 0) {
      std::printf(
          "SKIPPED: IOCM_BACKEND=uring, but io_uring cannot be set up here "
          "(io_uring_queue_init: %s)\n",
          std::strerror(-r));
      return 77;
    }
    io_uring_queue_exit(&ring);
  }
  return doctest::Context(argc, argv).run();
}
