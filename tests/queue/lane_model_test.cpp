// Model checking of the queue's core (iocm/detail/lane.h) under Relacy: the
// lane is instantiated with Relacy's atomics through its atomics template
// parameter, and Relacy runs each scenario under many thread schedules,
// simulating the weak memory orders, and checks each record arrives exactly
// once, in order per producer, and that the payload a producer wrote before
// enqueueing is visible to the consumer (a data race on it is reported).
//
// Scenarios (small, so that schedules are explored densely):
//   spsc_owned     1 producer (owned lane, single and bulk) x 1 consumer,
//                  capacity 2, 4 records: the lane laps twice
//   shared_mpsc    2 producers on the shared lane x 1 consumer
//   spmc_bulk      1 producer x 2 consumers taking batches
//   spmc_refill    1 producer x 2 consumers, capacity 4, 7 records: the lane
//                  fills, and its producer waits for the refill gap
//   mpmc_wrap      2 producers x 2 consumers on the shared lane, positions
//                  starting just below 2^64
//
// Each scenario runs under 500,000 random schedules (a count on the command
// line changes that); spsc_owned and spmc_bulk also run under every schedule
// with at most one preemption (Relacy's fair context-bound search). A bound
// of two did not finish within ten minutes.
//
// What it cannot see: slot values are raw bytes, which Relacy does not
// track, so a consumer's read racing a producer's overwrite of a reused
// slot (the pairing of (1) and (4) in lane.h) goes unnoticed; the payload
// check covers the publication side, (2) and (3). Weakening (2) to relaxed
// is reported as a DATA RACE in every scenario; claiming shared-lane
// positions with a plain store instead of the CAS, as a LIVELOCK or a race.
//
// Exit status 0 when every scenario passes, 1 when one fails (its kind and
// schedule are printed), 2 for a bad argument.
#include <relacy/relacy.hpp>

// relacy.hpp turns these words into macros for code written against its
// own std emulation; this file uses real std names and an adapter instead.
#undef memory_order_relaxed
#undef memory_order_consume
#undef memory_order_acquire
#undef memory_order_release
#undef memory_order_acq_rel
#undef memory_order_seq_cst
#undef new
#undef delete
#undef malloc
#undef calloc
#undef realloc
#undef free
#undef assert
#undef errno

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <source_location>

#include "iocm/detail/lane.h"

namespace {

rl::memory_order to_rl(std::memory_order mo) {
  switch (mo) {
    case std::memory_order_relaxed:
      return rl::mo_relaxed;
    case std::memory_order_consume:
      return rl::mo_consume;
    case std::memory_order_acquire:
      return rl::mo_acquire;
    case std::memory_order_release:
      return rl::mo_release;
    case std::memory_order_acq_rel:
      return rl::mo_acq_rel;
    default:
      return rl::mo_seq_cst;
  }
}

rl::debug_info where(const std::source_location& at) {
  return rl::debug_info(at.function_name(), at.file_name(), at.line());
}

/// std::atomic's interface, as lane.h uses it, over rl::atomic; each
/// access reports the line in lane.h that made it.
template <class T>
class rl_atom {
 public:
  rl_atom() = default;
  explicit rl_atom(T v) : a_(v) {}
  T load(std::memory_order mo,
         std::source_location at = std::source_location::current()) const noexcept {
    return a_.load(to_rl(mo), where(at));
  }
  void store(T v, std::memory_order mo,
             std::source_location at = std::source_location::current()) noexcept {
    a_.store(v, to_rl(mo), where(at));
  }
  bool compare_exchange_weak(T& expected, T desired, std::memory_order success,
                             std::memory_order failure,
                             std::source_location at = std::source_location::current()) noexcept {
    return a_.compare_exchange_weak(expected, desired, to_rl(success), where(at), to_rl(failure),
                                    where(at));
  }
  bool compare_exchange_strong(T& expected, T desired, std::memory_order success,
                               std::memory_order failure,
                               std::source_location at = std::source_location::current()) noexcept {
    return a_.compare_exchange_strong(expected, desired, to_rl(success), where(at), to_rl(failure),
                                      where(at));
  }

 private:
  mutable rl::atomic<T> a_;
};

/// A record: which producer, and its sequence number there.
struct rec {
  std::uint32_t producer;
  std::uint32_t seq;
  std::uint64_t pad;
};
using lane_t = iocm::detail::lane<rec, rl_atom>;

/// One record, trying again while other consumers take the head first.
bool take_one(lane_t& lane, rec& out) {
  for (;;) {
    const auto t = lane.dequeue_one_once(out);
    if (t != lane_t::take::contended) return t == lane_t::take::taken;
  }
}

constexpr unsigned max_records = 8;

/// One lane in raw storage, built and torn down inside Relacy's context
/// (its atomics must be), and the ledger every scenario checks.
template <unsigned Capacity>
struct lane_fixture {
  alignas(64) unsigned char slot_storage[Capacity * sizeof(lane_t::slot_type)];
  alignas(64) unsigned char lane_storage[sizeof(lane_t)];
  lane_t* lane = nullptr;
  // Written by the producer before it enqueues, read by the consumer after
  // it dequeues: Relacy reports a race if the hand-off does not order them.
  rl::var<std::uint32_t> payload[2][max_records];
  unsigned seen[2][max_records];  // how often each record came out
  unsigned next_seq[2][2];        // per consumer, per producer: the next expected

  void build(std::uint64_t first_position) {
    auto* slots = reinterpret_cast<lane_t::slot_type*>(slot_storage);
    lane = ::new (static_cast<void*>(lane_storage)) lane_t(slots, Capacity, first_position);
    std::memset(seen, 0, sizeof seen);
    std::memset(next_seq, 0, sizeof next_seq);
  }
  void tear_down() {
    lane->destroy_slots();
    lane->~lane_t();
  }
  rec make(std::uint32_t producer, std::uint32_t seq) {
    payload[producer][seq]($) = 1000 * producer + seq;
    return rec{producer, seq, 0};
  }
  void took(unsigned consumer, const rec& r) {
    RL_ASSERT(r.producer < 2 && r.seq < max_records);
    RL_ASSERT(payload[r.producer][r.seq]($) == 1000 * r.producer + r.seq);
    // FIFO per producer, as each consumer sees it.
    RL_ASSERT(r.seq >= next_seq[consumer][r.producer]);
    next_seq[consumer][r.producer] = r.seq + 1;
    ++seen[r.producer][r.seq];
  }
  /// Producer `producer` puts `count` records into the shared lane.
  void produce_shared(std::uint32_t producer, unsigned count) {
    for (std::uint32_t s = 0; s < count; ++s) {
      const rec r = make(producer, s);
      while (lane->enqueue_shared(&r, 1) != 1) rl::yield(1, $);
    }
  }
  /// The only consumer takes `total` records, in batches of two; with
  /// `alternate`, every other call takes one record instead.
  void consume_all(unsigned total, bool alternate) {
    for (unsigned got = 0; got < total;) {
      rec out[2];
      const std::size_t n =
          alternate && got % 2 == 1 ? take_one(*lane, out[0]) : lane->dequeue(out, 2);
      for (std::size_t i = 0; i < n; ++i) took(0, out[i]);
      got += static_cast<unsigned>(n);
      if (n == 0) rl::yield(1, $);
    }
  }
  void check_exactly_once(unsigned producers, unsigned per_producer) {
    for (unsigned p = 0; p < producers; ++p)
      for (unsigned s = 0; s < per_producer; ++s) RL_ASSERT(seen[p][s] == 1);
  }
};

struct spsc_owned : rl::test_suite<spsc_owned, 2> {
  static constexpr unsigned records = 4;
  lane_fixture<2> f;
  void before() { f.build(0); }
  void after() {
    f.check_exactly_once(1, records);
    f.tear_down();
  }
  void thread(unsigned index) {
    if (index == 0) {
      // Two single records, then a batch of two.
      for (std::uint32_t s = 0; s < 2; ++s) {
        const rec r = f.make(0, s);
        while (!f.lane->enqueue_one_owned(r)) rl::yield(1, $);
      }
      rec batch[2] = {f.make(0, 2), f.make(0, 3)};
      for (std::size_t sent = 0; sent < 2;) {
        sent += f.lane->enqueue_owned(batch + sent, 2 - sent);
        if (sent < 2) rl::yield(1, $);
      }
    } else {
      f.consume_all(records, true);
    }
  }
};

struct shared_mpsc : rl::test_suite<shared_mpsc, 3> {
  static constexpr unsigned per_producer = 2;
  lane_fixture<2> f;
  void before() { f.build(0); }
  void after() {
    f.check_exactly_once(2, per_producer);
    f.tear_down();
  }
  void thread(unsigned index) {
    if (index < 2)
      f.produce_shared(index, per_producer);
    else
      f.consume_all(2 * per_producer, false);
  }
};

/// One producer and two consumers on a lane of `Capacity`; the consumers
/// stop once every record is accounted for, whoever took it.
template <class Self, unsigned Capacity, unsigned Records>
struct spmc_suite : rl::test_suite<Self, 3> {
  static constexpr unsigned records = Records;
  lane_fixture<Capacity> f;
  rl::atomic<unsigned> taken;
  void before() {
    f.build(0);
    taken($).store(0, rl::mo_relaxed);
  }
  void after() {
    f.check_exactly_once(1, records);
    f.tear_down();
  }
  /// Consumer `index` (1 or 2) takes batches of up to `most`, or with
  /// `single`, one record at a time through the one-try take.
  void consume(unsigned index, std::size_t most, bool single) {
    while (taken($).load(rl::mo_relaxed) < records) {
      rec out[3];
      const std::size_t n =
          single ? (take_one(*f.lane, out[0]) ? 1 : 0) : f.lane->dequeue(out, most);
      for (std::size_t i = 0; i < n; ++i) f.took(index - 1, out[i]);
      if (n == 0)
        rl::yield(1, $);
      else
        taken($).fetch_add(static_cast<unsigned>(n), rl::mo_relaxed);
    }
  }
};

struct spmc_bulk : spmc_suite<spmc_bulk, 4, 4> {
  void thread(unsigned index) {
    if (index == 0) {
      rec batch[records];
      for (std::uint32_t s = 0; s < records; ++s) batch[s] = f.make(0, s);
      for (std::size_t sent = 0; sent < records;) {
        sent += f.lane->enqueue_owned(batch + sent, sent == 0 ? 3 : records - sent);
        if (sent < records) rl::yield(1, $);
      }
    } else {
      consume(index, 3, false);
    }
  }
};

/// A lane that fills: capacity 4, so a producer that finds it full waits
/// until the slot one past its tail is free (lane.h, refill_gap()), while
/// two consumers free slots in any order.
struct spmc_refill : spmc_suite<spmc_refill, 4, 7> {
  void thread(unsigned index) {
    if (index == 0) {
      // Singles past the capacity (the fifth finds the lane full unless a
      // consumer was quick), then batches.
      std::uint32_t s = 0;
      for (; s < 5; ++s) {
        const rec r = f.make(0, s);
        while (!f.lane->enqueue_one_owned(r)) rl::yield(1, $);
      }
      rec batch[records];
      for (std::uint32_t i = s; i < records; ++i) batch[i] = f.make(0, i);
      while (s < records) {
        const std::size_t n = f.lane->enqueue_owned(batch + s, records - s);
        s += static_cast<std::uint32_t>(n);
        if (n == 0) rl::yield(1, $);
      }
    } else {
      consume(index, 2, index == 2);
    }
  }
};

struct mpmc_wrap : rl::test_suite<mpmc_wrap, 4> {
  static constexpr unsigned per_producer = 2;
  lane_fixture<2> f;
  rl::atomic<unsigned> taken;
  void before() {
    f.build(~std::uint64_t{0} - 2);  // the positions cross 2^64
    taken($).store(0, rl::mo_relaxed);
  }
  void after() {
    f.check_exactly_once(2, per_producer);
    f.tear_down();
  }
  void thread(unsigned index) {
    if (index < 2) {
      f.produce_shared(index, per_producer);
    } else {
      while (taken($).load(rl::mo_relaxed) < 2 * per_producer) {
        rec out;
        // One consumer tries again at once when the other took the head
        // first; the other gives way (yields) and comes back.
        if (index == 2 ? take_one(*f.lane, out)
                       : f.lane->dequeue_one_once(out) == lane_t::take::taken) {
          f.took(index - 2, out);
          taken($).fetch_add(1, rl::mo_relaxed);
        } else {
          rl::yield(1, $);
        }
      }
    }
  }
};

/// Random schedules, then every schedule with at most `bound` preemptions
/// (Relacy's fair context-bound search: exhaustive within the bound).
template <class Test>
bool run(const char* name, int iterations, unsigned bound) {
  rl::test_params p;
  p.iteration_count = iterations;
  p.search_type = rl::random_scheduler_type;
  p.output_history = true;
  std::printf("%s: %d random schedules\n", name, iterations);
  std::fflush(stdout);
  bool ok = rl::simulate<Test>(p);
  if (ok && bound != 0) {
    rl::test_params full;
    full.search_type = rl::fair_context_bound_scheduler_type;
    full.context_bound = bound;
    full.output_history = true;
    std::printf("%s: every schedule with up to %u preemptions\n", name, bound);
    std::fflush(stdout);
    ok = rl::simulate<Test>(full);
    p = full;
  }
  if (ok) return true;
  std::printf("%s FAILED: %s at schedule %d\n", name, rl::test_result_str(p.test_result),
              p.stop_iteration);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  // A count on the command line scales every scenario (CI uses the default).
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 500000;
  if (iterations <= 0) {
    std::fprintf(stderr, "usage: %s [schedules per scenario > 0]\n", argv[0]);
    return 2;
  }
  bool ok = run<spsc_owned>("spsc_owned", iterations, 1);
  ok = run<shared_mpsc>("shared_mpsc", iterations, 0) && ok;
  ok = run<spmc_bulk>("spmc_bulk", iterations, 1) && ok;
  ok = run<spmc_refill>("spmc_refill", iterations, 0) && ok;
  ok = run<mpmc_wrap>("mpmc_wrap", iterations, 0) && ok;
  std::printf("%s\n", ok ? "all scenarios passed" : "a scenario FAILED");
  return ok ? 0 : 1;
}
