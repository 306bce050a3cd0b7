// Deadlock detection for tests of waits that must end: runs a call on its
// own thread and gives it a generous time. A call still running by then is
// a hang, not a slow machine: the test says which and ends the process at
// once (a deadlocked thread cannot be joined, and the engine it holds could
// not be destroyed).
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <iostream>
#include <thread>
#include <utility>

namespace iocm_test {

/// Runs call() on a new thread; if it has not returned after `limit`,
/// reports `what` as hung and exits the process with status 1.
template <class Call>
void must_return(const char* what, Call call,
                 std::chrono::seconds limit = std::chrono::seconds(30)) {
  std::packaged_task<void()> task(std::move(call));
  std::future<void> done = task.get_future();
  std::thread runner(std::move(task));
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not return within %lld s: a deadlock\n", what,
                 static_cast<long long>(limit.count()));
    std::cout.flush();  // what the test reported so far
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(1);
  }
  runner.join();
  done.get();
}

}  // namespace iocm_test
