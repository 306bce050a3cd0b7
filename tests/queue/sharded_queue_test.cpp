// sharded_queue: shard placement, memory hooks, stealing and fairness.
#include <doctest/doctest.h>

#include <memory_resource>
#include <set>
#include <stdexcept>
#include <vector>

#include "iocm/completion.h"
#include "iocm/sharded_queue.h"
#include "support/record.h"

using iocm::completion;
using iocm_test::make_record;
using sharded = iocm::sharded_queue<iocm::mpmc_queue<completion>>;

namespace {
iocm::queue_options small(std::size_t capacity, std::size_t producers) {
  iocm::queue_options o;
  o.capacity = capacity;
  o.producer_lanes = producers;
  return o;
}

struct counting_resource : std::pmr::memory_resource {
  long outstanding = 0;
  int allocations = 0;
  void* do_allocate(std::size_t b, std::size_t a) override {
    ++allocations;
    outstanding += static_cast<long>(b);
    return std::pmr::new_delete_resource()->allocate(b, a);
  }
  void do_deallocate(void* p, std::size_t b, std::size_t a) override {
    outstanding -= static_cast<long>(b);
    std::pmr::new_delete_resource()->deallocate(p, b, a);
  }
  bool do_is_equal(const memory_resource& o) const noexcept override { return this == &o; }
};
}  // namespace

TEST_CASE("each shard's memory comes from the hook for that shard") {
  std::vector<counting_resource> mem(3);
  std::vector<std::size_t> asked;
  {
    sharded q(3, small(32, 1), [&](std::size_t s) {
      asked.push_back(s);
      return static_cast<std::pmr::memory_resource*>(&mem[s]);
    });
    CHECK(asked == std::vector<std::size_t>{0, 1, 2});
    for (auto& m : mem) CHECK(m.allocations == 3);  // lane array + two slot arrays
  }
  for (auto& m : mem) CHECK(m.outstanding == 0);
}

TEST_CASE("a producer writes to the shard it names; a consumer steals when home is empty") {
  sharded q(2, small(16, 1));
  auto p1 = q.make_producer(1);
  CHECK(p1.shard() == 1);
  for (std::uint32_t i = 0; i < 10; ++i) {
    const completion r = make_record(1, i);
    REQUIRE(q.try_enqueue(p1, r));
  }
  CHECK(q.shard(1).size_approx() == 10);
  CHECK(q.shard(0).size_approx() == 0);
  auto c0 = q.make_consumer(0);
  completion out[16];
  std::uint32_t next = 0;
  while (std::size_t n = q.try_dequeue_bulk(c0, out, 3))
    for (std::size_t i = 0; i < n; ++i) CHECK(out[i].bytes == next++);
  CHECK(next == 10);
}

TEST_CASE("a remote shard is drained even while the home shard never empties") {
  const unsigned period = 8;
  sharded q(3, small(64, 1), {}, period);
  auto home = q.make_producer(0);
  auto far = q.make_producer(2);
  const completion lonely = make_record(2, 0);
  REQUIRE(q.try_enqueue(far, lonely));
  auto c = q.make_consumer(0);
  int found_at = -1;
  for (int call = 0; call < 200; ++call) {
    const completion r = make_record(0, static_cast<std::uint32_t>(call));
    REQUIRE(q.try_enqueue(home, r));
    completion out{};
    REQUIRE(q.try_dequeue(c, out));
    if (out.error == 2) {
      found_at = call;
      break;
    }
  }
  CHECK(found_at >= 0);
  CHECK(found_at < static_cast<int>(period * (q.shard_count() - 1)));
}

TEST_CASE("bad shard arguments are refused") {
  CHECK_THROWS_AS(sharded(0, small(8, 1)), std::invalid_argument);
  CHECK_THROWS_AS(sharded(2, small(8, 1), {}, 0), std::invalid_argument);
  CHECK_THROWS_AS(sharded(2, small(8, 1), {}, 16, 0), std::invalid_argument);
  sharded q(2, small(8, 1));
  CHECK_THROWS_WITH_AS(q.make_producer(2), doctest::Contains("shard 2 does not exist"),
                       std::out_of_range);
  CHECK_THROWS_AS(q.make_consumer(5), std::out_of_range);
  auto p = q.make_producer(0);
  CHECK_THROWS_AS(q.make_producer(0), std::runtime_error);  // one lane per shard
}

TEST_CASE("stealing takes at most steal_batch records at a time; home is taken whole") {
  sharded q(2, small(64, 1), {}, 16, 3);
  auto p0 = q.make_producer(0);
  auto p1 = q.make_producer(1);
  std::vector<completion> in;
  for (std::uint32_t i = 0; i < 10; ++i) in.push_back(make_record(0, i));
  REQUIRE(q.try_enqueue_bulk(p1, in.data(), in.size()) == 10);
  auto c = q.make_consumer(0);
  completion out[16];
  CHECK(q.try_dequeue_bulk(c, out, 16) == 3);  // remote: bounded
  CHECK(q.try_dequeue_bulk(c, out, 16) == 3);
  CHECK_FALSE(q.empty_approx());
  REQUIRE(q.try_enqueue_bulk(p0, in.data(), in.size()) == 10);
  CHECK(q.try_dequeue_bulk(c, out, 16) == 10);  // home: the whole batch
  auto c1 = q.make_consumer(1);
  CHECK(q.try_dequeue_bulk(c1, out, 16) == 4);  // its own home: the rest at once
  CHECK(q.empty_approx());
}
