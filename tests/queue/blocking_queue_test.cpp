// blocking_mpmc_queue: consumers that sleep are woken by the producer that
// publishes (no wake-up lost), timeouts end a wait, and producers wake no one
// when no one sleeps. The exactly-once ledgers run through it in
// queue_stress_test.cpp (blocking_variant).
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "iocm/blocking_queue.h"
#include "iocm/completion.h"

#include "support/queue_variants.h"

using iocm::completion;
using clock_type = std::chrono::steady_clock;

namespace {

/// Waits until `q` has `n` sleepers, for at most 10 s.
bool until_sleepers(const iocm::blocking_mpmc_queue<completion>& q, std::uint32_t n) {
  const auto until = clock_type::now() + std::chrono::seconds(10);
  while (q.sleepers() < n) {
    if (clock_type::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

}  // namespace

TEST_CASE("a consumer asleep is woken by each record, every time") {
  // The producer publishes a record only once the consumer has taken the
  // one before and counts itself a sleeper again, so nearly every record
  // finds it in the futex: a producer that did not look for sleepers (B1)
  // would leave it there until its timeout.
  iocm::blocking_mpmc_queue<completion> q(iocm_test::lane_options(1), /*spin_polls=*/0);
  constexpr std::uint32_t rounds = 300;
  std::atomic<bool> stuck{false};
  std::atomic<std::uint32_t> taken{0};
  std::thread producer([&] {
    auto p = q.make_producer();
    for (std::uint32_t i = 0; i < rounds && !stuck.load(); ++i) {
      while (taken.load() < i && !stuck.load()) std::this_thread::yield();
      if (stuck.load() || !until_sleepers(q, 1)) {
        stuck.store(true);
        return;
      }
      if (!q.try_enqueue(p, completion{0, i, nullptr})) {  // full: the consumer sleeps on
        stuck.store(true);
        return;
      }
    }
  });
  auto c = q.make_consumer();
  std::uint32_t received = 0, lost = 0;
  for (std::uint32_t i = 0; i < rounds; ++i) {
    completion x{};
    // A woken consumer is back in microseconds. One that nobody woke comes
    // out of the futex only at its timeout (then it finds the record, and
    // returns it): a wait as long as the timeout is a lost wake-up.
    constexpr auto timeout = std::chrono::seconds(2);
    const auto start = clock_type::now();
    const bool got = q.wait_dequeue(c, x, timeout);
    if (!got || clock_type::now() - start >= timeout) {
      ++lost;
      stuck.store(true);
      break;
    }
    CHECK(x.bytes == i);
    ++received;
    taken.store(received);
  }
  producer.join();
  CHECK(lost == 0);
  CHECK(received == rounds);
  CHECK(q.sleepers() == 0);
}

TEST_CASE("four sleeping consumers and two producers: every record taken once") {
  iocm::blocking_mpmc_queue<completion> q(iocm_test::lane_options(2), /*spin_polls=*/4);
  constexpr std::uint32_t per_producer = 20'000;
  std::atomic<std::uint32_t> taken{0};
  std::vector<std::atomic<std::uint8_t>> seen(2 * per_producer);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      auto c = q.make_consumer();
      completion batch[8];
      while (taken.load() < 2 * per_producer) {
        // Bounded, so that the last consumers notice the end.
        const std::size_t n = q.wait_dequeue_bulk(c, batch, 8, std::chrono::milliseconds(20));
        for (std::size_t i = 0; i < n; ++i)
          seen[batch[i].error * per_producer + batch[i].bytes].fetch_add(1);
        taken.fetch_add(static_cast<std::uint32_t>(n));
      }
    });
  for (std::uint32_t p = 0; p < 2; ++p)
    threads.emplace_back([&, p] {
      auto token = q.make_producer();
      for (std::uint32_t i = 0; i < per_producer; ++i) {
        while (!q.try_enqueue(token, completion{p, i, nullptr})) std::this_thread::yield();
        if (i % 64 == 0)
          std::this_thread::sleep_for(std::chrono::microseconds(20));  // let them sleep
      }
    });
  for (auto& t : threads) t.join();
  std::uint32_t once = 0;
  for (const auto& s : seen) once += s.load() == 1 ? 1 : 0;
  CHECK(taken.load() == 2 * per_producer);
  CHECK(once == 2 * per_producer);
}

TEST_CASE("a wait on an empty queue ends at its timeout, not before, with nothing") {
  iocm::blocking_mpmc_queue<completion> q(iocm_test::lane_options(1));
  auto c = q.make_consumer();
  completion out[4];
  const auto start = clock_type::now();
  CHECK(q.wait_dequeue_bulk(c, out, 4, std::chrono::milliseconds(30)) == 0);
  CHECK(clock_type::now() - start >= std::chrono::milliseconds(30));
  CHECK(q.sleepers() == 0);
  // A timeout of 0 only tries; max 0 takes nothing.
  CHECK(q.wait_dequeue_bulk(c, out, 4, std::chrono::nanoseconds(0)) == 0);
  auto p = q.make_producer();
  REQUIRE(q.try_enqueue(p, completion{1, 2, nullptr}));
  CHECK(q.wait_dequeue_bulk(c, out, 0, std::chrono::seconds(1)) == 0);
  CHECK(q.wait_dequeue_bulk(c, out, 4, std::chrono::nanoseconds(0)) == 1);
  CHECK(out[0].bytes == 2);
}

TEST_CASE("records already there are taken without sleeping; tokenless producers wake too") {
  iocm::blocking_mpmc_queue<completion> q(iocm_test::lane_options(1));
  auto c = q.make_consumer();
  REQUIRE(q.try_enqueue(completion{0, 7, nullptr}));
  completion x{};
  CHECK(q.wait_dequeue(c, x));
  CHECK(x.bytes == 7);
  std::thread late([&] {
    CHECK(until_sleepers(q, 1));
    CHECK(q.try_enqueue(completion{0, 8, nullptr}));
  });
  CHECK(q.wait_dequeue(c, x, std::chrono::seconds(10)));
  CHECK(x.bytes == 8);
  late.join();
}
