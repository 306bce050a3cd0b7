// The notifiers' parking stack (core/src/idle_notifiers.h): the most recently
// parked thread wakes first (LIFO, as an IOCP), a wake-up with nobody parked
// makes no syscall, and a thread that finds work while parking never sleeps.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "idle_notifiers.h"

using iocm::detail::idle_notifiers;
using iocm::detail::park_word;

namespace {

void wait_until(const std::function<bool()>& done) {
  for (int i = 0; i < 10000 && !done(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(done());
}

}  // namespace

TEST_CASE("the last notifier to park is the first to wake") {
  idle_notifiers idle(8, 1);
  park_word words[3];
  std::mutex m;
  std::vector<int> woke;
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      idle.park(words[i], 0, [] { return false; });
      std::lock_guard lock(m);
      woke.push_back(i);
    });
    wait_until([&] { return idle.parked() == static_cast<std::uint32_t>(i + 1); });
  }
  for (int i = 0; i < 3; ++i) {
    idle.wake_one(0);
    wait_until([&] {
      std::lock_guard lock(m);
      return woke.size() == static_cast<std::size_t>(i + 1);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(woke == std::vector<int>{2, 1, 0});
  CHECK(idle.wakeups() == 3);
}

TEST_CASE("no one parked: wake_one makes no wake-up") {
  idle_notifiers idle(4, 1);
  for (int i = 0; i < 1000; ++i) idle.wake_one(0);
  CHECK(idle.wakeups() == 0);
  CHECK(idle.parked() == 0);
}

TEST_CASE("work that arrives while parking cancels the sleep") {
  idle_notifiers idle(4, 1);
  park_word w;
  idle.park(w, 0, [] { return true; });  // returns at once: would hang otherwise
  CHECK(idle.parked() == 0);
  CHECK(w.state.load() == park_word::run);
  idle.wake_one(0);
  CHECK(idle.wakeups() == 0);  // it took itself off the stack
}

TEST_CASE("a wake-up for a home wakes that home's sleeper first, another home's otherwise") {
  idle_notifiers idle(4, 2);
  park_word words[2];
  std::atomic<int> woke{-1};
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      idle.park(words[i], static_cast<std::size_t>(i), [] { return false; });
      woke.store(i);
    });
    wait_until([&] { return idle.parked() == static_cast<std::uint32_t>(i + 1); });
  }
  // Sleeper 1 parked last, but work for home 0 wakes home 0's sleeper.
  idle.wake_one(0);
  wait_until([&] { return woke.load() == 0; });
  // Home 0 has nobody left: its work wakes home 1's sleeper rather than none.
  idle.wake_one(0);
  wait_until([&] { return woke.load() == 1; });
  for (auto& t : threads) t.join();
  CHECK(idle.parked() == 0);
  CHECK(idle.wakeups() == 2);
}
