// iocm-gate-bench: the deterministic tier of scripts/perf-gate.
//
// Each case runs one single-threaded hot path a fixed number of times: of
// the completion queue (here), and of the engine's own dispatch
// (gate_engine.cpp: a pumped engine's Post, Nop and file Read cycles). Under
// valgrind's callgrind (started with --instr-atstart=no) only the measured
// loop is instrumented, so the instruction count it reports is exact and the
// same on every run: the gate compares base and head by instructions per
// iteration, with no noise to average away. Nothing here starts a thread or
// waits: spinning would make the counts vary.
//
//   iocm-gate-bench --list
//   iocm-gate-bench --case NAME [--iterations N]
//
// Prints one JSON object: the case, the iterations, the records that went
// through and the wall time (meaningless under valgrind). Every record is
// checked to come out once and intact; a case that loses one exits 1. A bad
// argument exits 2.
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "gate_cases.h"
#include "iocm/completion.h"
#include "iocm/mpmc_queue.h"
#include "iocm/sharded_queue.h"

namespace {

using iocm::completion;
using iocm_gate::slowdown;
using iocm_gate::weigh;
using queue = iocm::mpmc_queue<completion>;
using summarized = iocm::mpmc_queue<completion, std::atomic, iocm::lane_summary::on>;
using sharded = iocm::sharded_queue<queue>;

// The engine's batch: what a poller publishes per harvest and a notifier
// takes per call (core/src/notifiers.h).
constexpr std::size_t batch = 32;
// Per lane; the engine's default queue capacity is larger, but the hot path
// does not depend on it and a small ring keeps the warm-up short.
constexpr std::size_t capacity = 1024;

struct outcome {
  std::uint64_t records = 0;  // that came out
  std::uint64_t sum = 0;      // of their fields, to check against what went in
};

// Record i: its fields derive from i, so a lost, duplicated or torn record
// changes the sum. Made once, before measuring, so that the measured loop
// spends its instructions in the queue rather than in making records.
constexpr std::size_t table_size = 64 * batch;
completion table[table_size];

void fill_table() noexcept {
  for (std::uint64_t i = 0; i < table_size; ++i)
    table[i] = completion{static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(i * 3 + 1),
                          reinterpret_cast<void*>(static_cast<std::uintptr_t>(i * 16 + 8))};
}
const completion& record(std::uint64_t i) noexcept { return table[i % table_size]; }
const completion* batch_of(std::uint64_t i) noexcept { return &table[i * batch % table_size]; }

std::uint64_t expected_sum(std::uint64_t first, std::uint64_t count) noexcept {
  std::uint64_t s = 0;
  for (std::uint64_t i = first; i < first + count; ++i) s += weigh(record(i));
  return s;
}

// Runs body(i) for i in [0, warmup) uninstrumented, then for [warmup,
// warmup + iterations) with callgrind's instrumentation on. Returns the
// outcome of the measured part only.
template <class Body>
outcome measure(std::uint64_t iterations, std::uint64_t warmup, Body&& body) {
  outcome warm;
  for (std::uint64_t i = 0; i < warmup; ++i) body(i, warm);
  outcome measured;
  CALLGRIND_START_INSTRUMENTATION;
  for (std::uint64_t i = warmup; i < warmup + iterations; ++i) body(i, measured);
  CALLGRIND_STOP_INSTRUMENTATION;
  return measured;
}

iocm::queue_options options(std::size_t producer_lanes) {
  iocm::queue_options o;
  o.capacity = capacity;
  o.producer_lanes = producer_lanes;
  o.summary_min_lanes = 0;  // the iocm_summary cases count the summary in use
  return o;
}

// One record in and out through tokens: a poller's single publish and a
// notifier's take.
template <class Queue = queue>
outcome pair_token(std::uint64_t iterations, std::uint64_t& first, std::uint64_t& per) {
  Queue q(options(1));
  auto producer = q.make_producer();
  auto consumer = q.make_consumer();
  first = 2 * capacity;
  per = 1;
  return measure(iterations, first, [&](std::uint64_t i, outcome& o) {
    completion out;
    slowdown();
    if (!q.try_enqueue(producer, record(i))) return;
    slowdown();
    if (!q.try_dequeue(consumer, out)) return;
    ++o.records;
    o.sum += weigh(out);
  });
}

// The same without tokens: the shared Vyukov lane, as a poller's inbox is
// used (submitters push, the poller takes).
outcome pair_shared(std::uint64_t iterations, std::uint64_t& first, std::uint64_t& per) {
  queue q(options(0));
  first = 2 * capacity;
  per = 1;
  return measure(iterations, first, [&](std::uint64_t i, outcome& o) {
    completion out;
    slowdown();
    if (!q.try_enqueue(record(i))) return;
    slowdown();
    if (!q.try_dequeue(out)) return;
    ++o.records;
    o.sum += weigh(out);
  });
}

// A batch of 32 records in through a producer token and out in one bulk
// dequeue, on a plain queue.
/// A batch in through `producer` and out through `consumer`, per iteration.
template <class Queue, class Producer, class Consumer>
outcome batch_through(Queue& q, Producer& producer, Consumer& consumer, std::uint64_t iterations,
                      std::uint64_t& first, std::uint64_t& per) {
  first = 2 * capacity / batch;
  per = batch;
  return measure(iterations, first, [&](std::uint64_t i, outcome& o) {
    completion out[batch];
    slowdown();
    if (q.try_enqueue_bulk(producer, batch_of(i), batch) != batch) return;
    slowdown();
    const std::size_t n = q.try_dequeue_bulk(consumer, out, batch);
    o.records += n;
    for (std::size_t k = 0; k < n; ++k) o.sum += weigh(out[k]);
  });
}

template <class Queue = queue>
outcome bulk_token(std::uint64_t iterations, std::uint64_t& first, std::uint64_t& per) {
  Queue q(options(1));
  auto producer = q.make_producer();
  auto consumer = q.make_consumer();
  return batch_through(q, producer, consumer, iterations, first, per);
}

// The engine's completion path on `shards` NUMA nodes: a poller publishes a
// harvested batch of 32 into its shard's lane, and a notifier homed on
// `home` takes a batch (from abroad when home is another shard).
outcome harvest(std::size_t shards, std::size_t home, std::uint64_t iterations,
                std::uint64_t& first, std::uint64_t& per) {
  sharded q(shards, options(1));
  auto producer = q.make_producer(0);
  auto consumer = q.make_consumer(home);
  return batch_through(q, producer, consumer, iterations, first, per);
}

// An engine case (gate_engine.cpp): it carries the table's records i in
// [first, first + iterations) through the engine and weighs what came out.
template <iocm_gate::engine_result (*Run)(std::uint64_t, std::uint64_t, const completion*,
                                          std::size_t)>
outcome engine_case(std::uint64_t iterations, std::uint64_t& first, std::uint64_t& per) {
  first = iocm_gate::engine_warmup;
  per = 1;
  const iocm_gate::engine_result r = Run(iterations, first, table, table_size);
  return {r.records, r.sum};
}

struct case_def {
  const char* name;
  const char* what;
  outcome (*run)(std::uint64_t iterations, std::uint64_t& first, std::uint64_t& per);
};

constexpr case_def cases[] = {
    {"gate/pair/iocm", "one record in and out through producer and consumer tokens", pair_token<>},
    {"gate/pair/iocm_summary", "the same on a queue with a summary of its non-empty lanes",
     pair_token<summarized>},
    {"gate/pair/iocm_shared", "one record in and out of the shared (tokenless) lane", pair_shared},
    {"gate/bulk32/iocm", "32 records in through a token, out in one bulk dequeue", bulk_token<>},
    {"gate/bulk32/iocm_summary", "the same on a queue with a summary of its non-empty lanes",
     bulk_token<summarized>},
    {"gate/harvest32/iocm_sharded1",
     "a poller's harvested batch of 32 into a one-shard queue, a notifier's take",
     [](std::uint64_t n, std::uint64_t& f, std::uint64_t& p) { return harvest(1, 0, n, f, p); }},
    {"gate/harvest32/iocm_sharded2",
     "the same on two shards, the notifier at home (with its periodic look abroad)",
     [](std::uint64_t n, std::uint64_t& f, std::uint64_t& p) { return harvest(2, 0, n, f, p); }},
    {"gate/steal32/iocm_sharded2",
     "two shards, the notifier homed on the empty one: every take is a steal",
     [](std::uint64_t n, std::uint64_t& f, std::uint64_t& p) { return harvest(2, 1, n, f, p); }},
    {"gate/engine_post/iocm_pumped",
     "a pumped engine (epoll): Post, then Pump delivers it to OnComplete",
     engine_case<iocm_gate::engine_post>},
    {"gate/engine_nop/iocm_pumped",
     "a pumped engine (epoll): Nop on a bound pipe, then Pump runs and delivers it",
     engine_case<iocm_gate::engine_nop>},
    {"gate/engine_read4k/iocm_pumped",
     "a pumped engine (epoll): a 4 KiB Read of a file, which Pump reads and delivers",
     engine_case<iocm_gate::engine_read4k>},
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "iocm-gate-bench: %s\nusage: iocm-gate-bench --list | --case NAME "
               "[--iterations N]\n",
               message.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string_view name;
  std::uint64_t iterations = 10000;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--list") {
      for (const case_def& c : cases) std::printf("%s\t%s\n", c.name, c.what);
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::printf("usage: iocm-gate-bench --list | --case NAME [--iterations N]\n");
      return 0;
    } else if (arg == "--case" && i + 1 < argc) {
      name = argv[++i];
    } else if (arg == "--iterations" && i + 1 < argc) {
      char* end = nullptr;
      const char* text = argv[++i];
      iterations = std::strtoull(text, &end, 10);
      if (*text == '\0' || *end != '\0' || iterations == 0 || iterations > (1ull << 40))
        usage_error(std::string("--iterations wants a count from 1 to 2^40, not '") + text + "'");
    } else {
      usage_error("unknown or incomplete argument '" + std::string(arg) + "'");
    }
  }
  if (name.empty()) usage_error("no --case given (--list shows them)");
  for (const case_def& c : cases) {
    if (name != c.name) continue;
    fill_table();
    std::uint64_t first = 0, per = 1;
    const auto start = std::chrono::steady_clock::now();
    const outcome o = c.run(iterations, first, per);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::uint64_t want = iterations * per;
    const bool ok = o.records == want && o.sum == expected_sum(first * per, want);
    std::printf(
        "{\"case\": \"%s\", \"iterations\": %llu, \"records\": %llu, \"expected_records\": %llu, "
        "\"intact\": %s, \"seconds\": %.6f}\n",
        c.name, static_cast<unsigned long long>(iterations),
        static_cast<unsigned long long>(o.records), static_cast<unsigned long long>(want),
        ok ? "true" : "false", seconds);
    if (!ok) std::fprintf(stderr, "iocm-gate-bench: %s lost, duplicated or tore records\n", c.name);
    return ok ? 0 : 1;
  }
  usage_error("unknown case '" + std::string(name) + "' (--list shows them)");
}
