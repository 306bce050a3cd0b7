// Concurrent producers and consumers on every queue variant: every record is
// delivered exactly once (a ledger of ids), and each consumer sees each
// producer's records in the order they were made.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "iocm/completion.h"
#include "iocm/detail/backoff.h"
#include "support/queue_variants.h"
#include "support/record.h"

using iocm::completion;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint32_t scale = 5;  // sanitizers run 5-20x slower
#else
constexpr std::uint32_t scale = 1;
#endif

struct stress_config {
  std::size_t producers;
  std::size_t consumers;
  std::uint32_t per_producer;
  std::size_t capacity;
  std::size_t max_batch;  // 1: single operations only
  bool yield_often;       // oversubscription: hand the core over between batches
  std::uint64_t first_position = 0;
};

struct stress_report {
  std::uint64_t lost = 0, duplicated = 0, torn = 0, out_of_order = 0, delivered = 0;
};

template <class V>
stress_report run_stress(const stress_config& cfg) {
  V v(cfg.capacity, cfg.producers, cfg.first_position);
  const std::uint64_t total = std::uint64_t{cfg.per_producer} * cfg.producers;
  // The ledger: one counter per id; exactly-once means every counter ends at 1.
  std::unique_ptr<std::atomic<std::uint8_t>[]> ledger(new std::atomic<std::uint8_t>[total]);
  for (std::uint64_t i = 0; i < total; ++i) ledger[i].store(0, std::memory_order_relaxed);
  std::atomic<std::uint64_t> consumed{0}, torn{0}, out_of_order{0};
  std::atomic<bool> go{false};

  std::vector<typename V::producer> producer_handles;
  for (std::size_t p = 0; p < cfg.producers; ++p) producer_handles.push_back(v.make_producer(p));

  std::vector<std::thread> threads;
  for (std::size_t p = 0; p < cfg.producers; ++p) {
    threads.emplace_back([&, p] {
      auto& handle = producer_handles[p];
      std::minstd_rand rng(static_cast<unsigned>(p) + 1);
      std::vector<completion> batch(cfg.max_batch);
      iocm::detail::backoff wait;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      std::uint32_t seq = 0;
      while (seq < cfg.per_producer) {
        const std::size_t want =
            std::min<std::size_t>(1 + rng() % cfg.max_batch, cfg.per_producer - seq);
        for (std::size_t i = 0; i < want; ++i)
          batch[i] = iocm_test::make_record(static_cast<std::uint32_t>(p),
                                            seq + static_cast<std::uint32_t>(i));
        const std::size_t put = v.enqueue(handle, batch.data(), want);
        seq += static_cast<std::uint32_t>(put);
        if (put == 0) {
          wait.pause();
        } else {
          wait.reset();
          if (cfg.yield_often && rng() % 4 == 0) std::this_thread::yield();
        }
      }
    });
  }
  for (std::size_t c = 0; c < cfg.consumers; ++c) {
    threads.emplace_back([&, c] {
      auto handle = v.make_consumer(c);
      std::vector<std::int64_t> last(cfg.producers, -1);
      std::vector<completion> batch(cfg.max_batch);
      std::minstd_rand rng(static_cast<unsigned>(c) + 101);
      iocm::detail::backoff wait;
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      while (consumed.load(std::memory_order_relaxed) < total) {
        const std::size_t got = v.dequeue(handle, batch.data(), 1 + rng() % cfg.max_batch);
        if (got == 0) {
          wait.pause();
          continue;
        }
        wait.reset();
        for (std::size_t i = 0; i < got; ++i) {
          const completion& r = batch[i];
          if (!iocm_test::record_intact(r) || r.error >= cfg.producers ||
              r.bytes >= cfg.per_producer) {
            torn.fetch_add(1, std::memory_order_relaxed);
            continue;
          }
          if (static_cast<std::int64_t>(r.bytes) <= last[r.error])
            out_of_order.fetch_add(1, std::memory_order_relaxed);
          last[r.error] = r.bytes;
          ledger[std::uint64_t{r.error} * cfg.per_producer + r.bytes].fetch_add(
              1, std::memory_order_relaxed);
        }
        consumed.fetch_add(got, std::memory_order_relaxed);
        if (cfg.yield_often && rng() % 4 == 0) std::this_thread::yield();
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();

  stress_report r;
  r.delivered = consumed.load();
  r.torn = torn.load();
  r.out_of_order = out_of_order.load();
  for (std::uint64_t i = 0; i < total; ++i) {
    const auto n = ledger[i].load(std::memory_order_relaxed);
    if (n == 0) ++r.lost;
    if (n > 1) r.duplicated += n - 1u;
  }
  // Nothing left behind either.
  typename V::consumer extra = v.make_consumer(0);
  completion leftover{};
  if (v.dequeue(extra, &leftover, 1) != 0) ++r.duplicated;
  return r;
}

template <class V>
void check_stress(const stress_config& cfg) {
  const stress_report r = run_stress<V>(cfg);
  INFO("variant=" << std::string(V::name) << " producers=" << cfg.producers
                  << " consumers=" << cfg.consumers << " per_producer=" << cfg.per_producer
                  << " batch=" << cfg.max_batch);
  CHECK(r.lost == 0);
  CHECK(r.duplicated == 0);
  CHECK(r.torn == 0);
  CHECK(r.out_of_order == 0);
  CHECK(r.delivered == std::uint64_t{cfg.per_producer} * cfg.producers);
  MESSAGE(std::string(V::name) << " " << cfg.producers << "x" << cfg.consumers << ": delivered "
                               << r.delivered << ", lost " << r.lost << ", duplicated "
                               << r.duplicated);
}

}  // namespace

TEST_CASE_TEMPLATE("1 producer x 1 consumer, single records", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  check_stress<V>({1, 1, 1'000'000 / scale, 64, 1, false});
}

TEST_CASE_TEMPLATE("1 producer x 1 consumer, batches up to 32", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  check_stress<V>({1, 1, 3'000'000 / scale, 256, 32, false});
}

TEST_CASE_TEMPLATE("2 producers x 2 consumers, batches", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  check_stress<V>({2, 2, 600'000 / scale, 128, 16, false});
}

TEST_CASE_TEMPLATE("4 producers x 4 consumers oversubscribed, with yields", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  check_stress<V>({4, 4, 250'000 / scale, 64, 8, true});
}

TEST_CASE_TEMPLATE("4 producers x 1 consumer and 1 producer x 4 consumers", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  check_stress<V>({4, 1, 200'000 / scale, 32, 8, true});
  check_stress<V>({1, 4, 600'000 / scale, 32, 8, true});
}

TEST_CASE_TEMPLATE("tiny lanes lap many times across the 2^64 wrap under contention", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  const std::uint64_t near_wrap = std::numeric_limits<std::uint64_t>::max() - 1000;
  check_stress<V>({2, 2, 200'000 / scale, 4, 3, true, near_wrap});
}

TEST_CASE_TEMPLATE("64 and 256 producer lanes, 4 consumers: exactly once, in order per producer", V,
                   IOCM_QUEUE_STRESS_VARIANTS(completion)) {
  // As many lanes as the pollers of a 64- and a 256-core host: consumers
  // scan them all, most of them empty at any moment.
  check_stress<V>({64, 4, 20'000 / scale, 64, 8, true});
  check_stress<V>({256, 4, 4'000 / scale, 16, 8, true});
}
