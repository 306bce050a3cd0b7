// Built in the tsan preset only. Two threads each fence in a handshake of
// its own, and race on a plain variable that neither handshake publishes:
// TSan must report the race. A stand-in for the fence that made every
// fence synchronise with every other (one word for the whole process)
// would order the two threads and hide it, and this check would fail.
#include <atomic>
#include <cstdio>
#include <thread>

#include "iocm/detail/fence.h"

namespace {

int unpublished = 0;               // written by one thread, read by the other
std::atomic<int> handshake_a{0};   // the writer's handshake word
std::atomic<int> handshake_b{0};   // the reader's, unrelated
std::atomic<bool> written{false};  // relaxed: orders nothing for TSan

}  // namespace

int main() {
  std::thread writer([] {
    unpublished = 42;
    iocm::detail::store_load_fence(handshake_a);
    written.store(true, std::memory_order_relaxed);
  });
  while (!written.load(std::memory_order_relaxed)) std::this_thread::yield();
  iocm::detail::store_load_fence(handshake_b);
  const int seen = unpublished;  // the race TSan must report
  writer.join();
  std::printf("read %d\n", seen);
  return 0;
}
