// Single-threaded semantics of every queue variant: edges, bulk, wrap-around,
// element lifetimes and bad input.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <stdexcept>
#include <vector>

#include "iocm/completion.h"
#include "iocm/mpmc_queue.h"
#include "support/queue_variants.h"
#include "support/record.h"

using iocm::completion;
using iocm_test::make_record;

namespace {

template <class V>
void expect_sequence(V& v, typename V::consumer& c, std::uint32_t from, std::uint32_t count) {
  for (std::uint32_t i = 0; i < count; ++i) {
    completion out{};
    REQUIRE(v.dequeue(c, &out, 1) == 1);
    CHECK(out.bytes == from + i);
    CHECK(iocm_test::record_intact(out));
  }
}

}  // namespace

TEST_CASE_TEMPLATE("an empty queue gives nothing and zero-sized bulks are no-ops", V,
                   IOCM_QUEUE_VARIANTS(completion)) {
  V v(8, 1);
  auto p = v.make_producer(0);
  auto c = v.make_consumer(0);
  completion out{};
  CHECK(v.dequeue(c, &out, 1) == 0);
  CHECK(v.dequeue(c, &out, 0) == 0);
  CHECK(v.dequeue(c, nullptr, 0) == 0);
  CHECK(v.enqueue(p, nullptr, 0) == 0);
  CHECK(v.size_approx() == 0);
}

TEST_CASE_TEMPLATE("fills to capacity, refuses one more, drains in order, refills", V,
                   IOCM_QUEUE_VARIANTS(completion)) {
  V v(8, 1);
  auto p = v.make_producer(0);
  auto c = v.make_consumer(0);
  const auto cap = static_cast<std::uint32_t>(v.capacity_per_producer());
  REQUIRE(cap == 8);
  for (std::uint32_t lap = 0; lap < 3; ++lap) {
    for (std::uint32_t i = 0; i < cap; ++i) {
      const completion r = make_record(0, lap * cap + i);
      REQUIRE(v.enqueue(p, &r, 1) == 1);
    }
    const completion extra = make_record(0, 999);
    CHECK(v.enqueue(p, &extra, 1) == 0);
    CHECK(v.size_approx() == cap);
    expect_sequence(v, c, lap * cap, cap);
    completion out{};
    CHECK(v.dequeue(c, &out, 1) == 0);
    CHECK(v.size_approx() == 0);
  }
}

TEST_CASE_TEMPLATE("bulk operations take what fits and return how many", V,
                   IOCM_QUEUE_VARIANTS(completion)) {
  V v(16, 1);
  auto p = v.make_producer(0);
  auto c = v.make_consumer(0);
  std::vector<completion> in;
  for (std::uint32_t i = 0; i < 40; ++i) in.push_back(make_record(0, i));
  CHECK(v.enqueue(p, in.data(), 20) == 16);  // partial: the lane holds 16
  std::array<completion, 64> out{};
  CHECK(v.dequeue(c, out.data(), 5) == 5);
  for (std::uint32_t i = 0; i < 5; ++i) CHECK(out[i].bytes == i);
  CHECK(v.enqueue(p, in.data() + 16, 10) == 5);  // five places were freed
  CHECK(v.dequeue(c, out.data(), out.size()) == 16);
  for (std::uint32_t i = 0; i < 16; ++i) {
    CHECK(out[i].bytes == 5 + i);
    CHECK(iocm_test::record_intact(out[i]));
  }
  CHECK(v.dequeue(c, out.data(), out.size()) == 0);
}

TEST_CASE_TEMPLATE("positions wrap across 2^64 without losing or reordering records", V,
                   IOCM_QUEUE_VARIANTS(completion)) {
  const std::uint64_t near_wrap = std::numeric_limits<std::uint64_t>::max() - 37;
  V v(16, 1, near_wrap);
  auto p = v.make_producer(0);
  auto c = v.make_consumer(0);
  std::uint32_t next_in = 0, next_out = 0;
  std::array<completion, 16> buf{};
  // Uneven batch sizes so that batches straddle the wrap point.
  for (int round = 0; round < 40; ++round) {
    const std::size_t want = 1 + static_cast<std::size_t>(round * 7) % 16;
    std::array<completion, 16> in{};
    for (std::size_t i = 0; i < want; ++i)
      in[i] = make_record(0, next_in + static_cast<std::uint32_t>(i));
    const std::size_t put = v.enqueue(p, in.data(), want);
    next_in += static_cast<std::uint32_t>(put);
    CHECK(v.size_approx() == next_in - next_out);
    const std::size_t got = v.dequeue(c, buf.data(), 1 + static_cast<std::size_t>(round * 5) % 16);
    for (std::size_t i = 0; i < got; ++i) {
      CHECK(buf[i].bytes == next_out);
      ++next_out;
    }
  }
  while (std::size_t got = v.dequeue(c, buf.data(), buf.size()))
    for (std::size_t i = 0; i < got; ++i) CHECK(buf[i].bytes == next_out++);
  CHECK(next_in == next_out);
  CHECK(next_in > 3 * 16);  // really went round the 2^64 boundary several laps
}

namespace {

/// Trivially copyable, yet counts every object made by a constructor: the
/// queue must make none of its own (storage is raw; copies are bytes).
struct counted {
  static inline int constructed = 0;
  counted() { ++constructed; }
  explicit counted(std::uint64_t v) : value(v) { ++constructed; }
  std::uint64_t value = 0;
  std::uint8_t tail[7] = {};  // odd size: 15 bytes of payload, 16 with padding
};
static_assert(std::is_trivially_copyable_v<counted>);

}  // namespace

TEST_CASE_TEMPLATE("the queue constructs no elements and copies their bytes exactly", V,
                   IOCM_QUEUE_VARIANTS(counted)) {
  counted::constructed = 0;
  V v(1024, 2);
  CHECK(counted::constructed == 0);  // 1024-slot lanes, no element constructed
  auto p = v.make_producer(0);
  auto c = v.make_consumer(0);
  std::vector<counted> in;
  for (std::uint64_t i = 0; i < 100; ++i) {
    counted x(i * 0x9E3779B97F4A7C15ull);
    for (int b = 0; b < 7; ++b) x.tail[b] = static_cast<std::uint8_t>(i + static_cast<unsigned>(b));
    in.push_back(x);
  }
  const int made_by_test = counted::constructed;
  REQUIRE(v.enqueue(p, in.data(), in.size()) == in.size());
  std::vector<counted> out(in.size());  // value-initialised by the test: counted
  const int before_dequeue = counted::constructed;
  REQUIRE(v.dequeue(c, out.data(), out.size()) == in.size());
  CHECK(counted::constructed == before_dequeue);
  CHECK(before_dequeue == made_by_test + static_cast<int>(in.size()));
  for (std::size_t i = 0; i < in.size(); ++i) {
    CHECK(out[i].value == in[i].value);
    CHECK(std::equal(std::begin(out[i].tail), std::end(out[i].tail), std::begin(in[i].tail)));
  }
}

TEST_CASE("capacity is rounded up to a power of two, at least 2") {
  iocm::queue_options o;
  o.capacity = 5;
  iocm::mpmc_queue<completion> q(o);
  CHECK(q.capacity() == 8);
  o.capacity = 1;
  iocm::mpmc_queue<completion> small(o);
  CHECK(small.capacity() == 2);
  completion out{};
  for (std::uint32_t i = 0; i < 2; ++i) CHECK(small.try_enqueue(make_record(0, i)));
  CHECK_FALSE(small.try_enqueue(make_record(0, 2)));
  for (std::uint32_t lap = 0; lap < 5; ++lap) {  // the smallest lane laps correctly
    CHECK(small.try_dequeue(out));
    CHECK(out.bytes == lap);
    CHECK(small.try_enqueue(make_record(0, lap + 2)));
  }
}

TEST_CASE("bad construction parameters are refused with a clear error") {
  iocm::queue_options o;
  o.capacity = 0;
  CHECK_THROWS_AS(iocm::mpmc_queue<completion>{o}, std::invalid_argument);
  o.capacity = std::size_t{1} << 41;
  CHECK_THROWS_WITH_AS(iocm::mpmc_queue<completion>{o},
                       doctest::Contains("larger than a lane can address"), std::length_error);
  o.capacity = std::numeric_limits<std::size_t>::max();
  CHECK_THROWS_AS(iocm::mpmc_queue<completion>{o}, std::length_error);
  o.capacity = 8;
  o.producer_lanes = iocm::mpmc_queue<completion>::max_producer_lanes + 1;
  CHECK_THROWS_AS(iocm::mpmc_queue<completion>{o}, std::invalid_argument);
  o.producer_lanes = 1;
  o.consumer_burst = 0;
  CHECK_THROWS_AS(iocm::mpmc_queue<completion>{o}, std::invalid_argument);
}

TEST_CASE("producer tokens are limited to the lanes and given back on destruction") {
  iocm::queue_options o;
  o.capacity = 4;
  o.producer_lanes = 2;
  iocm::mpmc_queue<completion> q(o);
  auto a = q.make_producer();
  auto b = q.make_producer();
  CHECK_THROWS_WITH_AS(q.make_producer(), doctest::Contains("producer lanes are in use"),
                       std::runtime_error);
  const completion r = make_record(7, 1);
  REQUIRE(q.try_enqueue(a, r));
  a.reset();  // its record stays and the lane can be taken again
  auto a2 = q.make_producer();
  CHECK(a2.valid());
  CHECK(q.size_approx() == 1);
  const completion r2 = make_record(7, 2);
  REQUIRE(q.try_enqueue(a2, r2));  // continues the same lane in order (or a fresh one)
  iocm::mpmc_queue<completion>::consumer_token c;
  completion out{};
  REQUIRE(q.try_dequeue(c, out));
  CHECK(out.bytes == 1);
  REQUIRE(q.try_dequeue(c, out));
  CHECK(out.bytes == 2);
  auto moved = std::move(b);
  CHECK_FALSE(b.valid());
  CHECK(moved.valid());

  o.producer_lanes = 0;
  iocm::mpmc_queue<completion> shared_only(o);
  CHECK_THROWS_AS(shared_only.make_producer(), std::runtime_error);
}

namespace {

/// Counts bytes outstanding; can fail the Nth allocation or misalign.
class test_resource : public std::pmr::memory_resource {
 public:
  int fail_at = -1;       // 0-based allocation index that throws
  bool misalign = false;  // hand out storage 8 bytes off a line
  int allocations = 0;
  long outstanding = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    if (allocations++ == fail_at) throw std::bad_alloc();
    outstanding += static_cast<long>(bytes);
    if (!misalign) return std::pmr::new_delete_resource()->allocate(bytes, align);
    auto* p = static_cast<char*>(std::pmr::new_delete_resource()->allocate(bytes + 64, 64));
    return p + 8;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    outstanding -= static_cast<long>(bytes);
    if (!misalign) return std::pmr::new_delete_resource()->deallocate(p, bytes, align);
    std::pmr::new_delete_resource()->deallocate(static_cast<char*>(p) - 8, bytes + 64, 64);
  }
  bool do_is_equal(const memory_resource& o) const noexcept override { return this == &o; }
};

}  // namespace

TEST_CASE("all storage comes from the memory resource and is returned, even on failure") {
  test_resource mem;
  iocm::queue_options o;
  o.capacity = 64;
  o.producer_lanes = 3;
  o.memory = &mem;
  {
    iocm::mpmc_queue<completion> q(o);
    CHECK(mem.allocations == 5);  // the lane array and four slot arrays
    CHECK(mem.outstanding > 0);
    auto p = q.make_producer();
    const completion r = make_record(1, 1);
    CHECK(q.try_enqueue(p, r));
    CHECK(mem.allocations == 5);  // enqueue allocates nothing
  }
  CHECK(mem.outstanding == 0);

  for (int n = 0; n < 5; ++n) {
    test_resource failing;
    failing.fail_at = n;
    o.memory = &failing;
    CHECK_THROWS_AS(iocm::mpmc_queue<completion>{o}, std::bad_alloc);
    CHECK(failing.outstanding == 0);  // nothing leaked on the way out
  }

  test_resource crooked;
  crooked.misalign = true;
  o.memory = &crooked;
  CHECK_THROWS_WITH_AS(iocm::mpmc_queue<completion>{o}, doctest::Contains("alignment"),
                       std::runtime_error);
  CHECK(crooked.outstanding == 0);
}

TEST_CASE("no producer lane starves a consumer that keeps finding records elsewhere") {
  iocm::queue_options o;
  o.capacity = 256;
  o.producer_lanes = 3;
  o.consumer_burst = 4;
  iocm::mpmc_queue<completion> q(o);
  auto busy = q.make_producer();
  auto quiet = q.make_producer();
  const completion lonely = make_record(2, 0);
  REQUIRE(q.try_enqueue(quiet, lonely));
  iocm::mpmc_queue<completion>::consumer_token c;
  std::uint32_t seq = 0;
  int calls_until_quiet = -1;
  for (int call = 0; call < 100; ++call) {
    completion r = make_record(1, seq++);
    REQUIRE(q.try_enqueue(busy, r));  // the busy lane never empties
    completion out{};
    REQUIRE(q.try_dequeue(c, out));
    if (out.error == 2) {
      calls_until_quiet = call;
      break;
    }
  }
  CHECK(calls_until_quiet >= 0);
  // lanes * burst bounds the wait (3 producer lanes + the shared one).
  CHECK(calls_until_quiet < static_cast<int>(q.lane_count() * 4));
}

TEST_CASE("a producer lane found full takes records again only once over a quarter of it is free") {
  // A lane of 16 refills once 4 slots are free again.
  iocm::mpmc_queue<completion> q({.capacity = 16, .producer_lanes = 1});
  auto p = q.make_producer();
  auto c = q.make_consumer();
  std::uint32_t sent = 0, taken = 0;
  while (q.try_enqueue(p, make_record(1, sent))) ++sent;
  REQUIRE(sent == 16);
  auto take = [&] {
    completion out{};
    REQUIRE(q.try_dequeue(c, out));
    CHECK(out.bytes == taken);  // in order, none lost
    ++taken;
  };
  for (int i = 0; i < 4; ++i) {
    take();
    // Up to 4 slots are free, but the lane was found full: refused, one
    // record and a batch alike.
    CHECK_FALSE(q.try_enqueue(p, make_record(1, sent)));
    const completion batch[2] = {make_record(1, sent), make_record(1, sent + 1)};
    CHECK(q.try_enqueue_bulk(p, batch, 2) == 0);
  }
  take();  // 5 free: the slot 4 past the tail is free
  const completion batch[5] = {make_record(1, sent), make_record(1, sent + 1),
                               make_record(1, sent + 2), make_record(1, sent + 3),
                               make_record(1, sent + 4)};
  CHECK(q.try_enqueue_bulk(p, batch, 5) == 5);
  sent += 5;
  CHECK_FALSE(q.try_enqueue(p, make_record(1, sent)));  // full again
  while (taken < sent) take();
  CHECK(q.try_enqueue(p, make_record(1, sent)));  // empty: open at once
  ++sent;
  // A bulk of none is not a refusal: at 13 of 16 it does not close the lane.
  for (int i = 0; i < 12; ++i) REQUIRE(q.try_enqueue(p, make_record(1, sent++)));
  CHECK(q.try_enqueue_bulk(p, batch, 0) == 0);
  CHECK(q.try_enqueue(p, make_record(1, sent++)));
  while (taken < sent) take();
}

TEST_CASE("consumer_burst counts records, not batches: bulk takes leave a busy lane as soon") {
  iocm::mpmc_queue<completion> q({.capacity = 256, .producer_lanes = 2, .consumer_burst = 8});
  auto busy = q.make_producer();
  auto quiet = q.make_producer();
  REQUIRE(q.try_enqueue(quiet, make_record(2, 0)));
  iocm::mpmc_queue<completion>::consumer_token c;  // starts at the shared lane, which is empty
  std::uint32_t seq = 0;
  std::size_t busy_records_before_quiet = 0;
  bool quiet_seen = false;
  for (int call = 0; call < 100 && !quiet_seen; ++call) {
    completion batch[4];
    for (int i = 0; i < 4; ++i) REQUIRE(q.try_enqueue(busy, make_record(1, seq++)));
    const std::size_t n = q.try_dequeue_bulk(c, batch, 4);
    REQUIRE(n > 0);
    for (std::size_t i = 0; i < n; ++i) {
      if (batch[i].error == 2) {
        quiet_seen = true;
        break;
      }
      ++busy_records_before_quiet;
    }
  }
  REQUIRE(quiet_seen);
  // The busy lane gave 8 records (two batches of 4) and then the consumer
  // turned; counting batches, it would have stayed for 8 batches (32).
  CHECK(busy_records_before_quiet == 8);
}

namespace {

/// std::atomic that counts read-modify-writes: proves the atomics type is a
/// real template parameter (a model checker can swap in its own) and pins
/// down which operations pay for an RMW.
inline thread_local int rmw_count = 0;
template <class T>
struct counting_atomic : std::atomic<T> {
  using std::atomic<T>::atomic;
  using std::atomic<T>::operator=;
  bool compare_exchange_weak(T& e, T d, std::memory_order s, std::memory_order f) noexcept {
    ++rmw_count;
    return std::atomic<T>::compare_exchange_weak(e, d, s, f);
  }
  bool compare_exchange_strong(T& e, T d, std::memory_order s, std::memory_order f) noexcept {
    ++rmw_count;
    return std::atomic<T>::compare_exchange_strong(e, d, s, f);
  }
  T fetch_add(T v, std::memory_order o) noexcept {
    ++rmw_count;
    return std::atomic<T>::fetch_add(v, o);
  }
};

}  // namespace

TEST_CASE("the atomics type is swappable; a producer token enqueues with no RMW") {
  iocm::queue_options o;
  o.capacity = 64;
  o.producer_lanes = 1;
  iocm::mpmc_queue<completion, counting_atomic> q(o);
  auto p = q.make_producer();
  auto c = q.make_consumer();
  rmw_count = 0;
  for (std::uint32_t i = 0; i < 32; ++i) REQUIRE(q.try_enqueue(p, make_record(0, i)));
  std::array<completion, 8> batch{};
  for (std::uint32_t i = 32; i < 64; i += 8) {
    for (std::uint32_t k = 0; k < 8; ++k) batch[k] = make_record(0, i + k);
    REQUIRE(q.try_enqueue_bulk(p, batch.data(), 8) == 8);
  }
  CHECK(rmw_count == 0);  // wait-free: the owner never contends
  completion out{};
  REQUIRE(q.try_dequeue(c, out));
  CHECK(out.bytes == 0);
  CHECK(rmw_count == 1);  // one claim per dequeue
  REQUIRE(q.try_dequeue_bulk(c, batch.data(), 8) == 8);
  CHECK(batch[7].bytes == 8);
  CHECK(rmw_count == 2);  // and one per batch, however large
  const completion shared = make_record(9, 9);
  REQUIRE(q.try_enqueue(shared));
  CHECK(rmw_count == 3);  // tokenless producers claim with a CAS
}
