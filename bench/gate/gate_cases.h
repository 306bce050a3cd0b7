// What the deterministic tier's cases share (gate_bench.cpp: the queue's;
// gate_engine.cpp: the engine's): how a record is weighed, and the
// slowdown the gate's own test builds in. And the engine cases, as
// gate_bench.cpp runs them: each carries the records table[i % size] for i
// in [first, first + iterations) through a pumped engine, measuring those
// iterations under callgrind after `first` unmeasured ones, and returns how
// many came out right and the sum of their weights.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "iocm/completion.h"

namespace iocm_gate {

/// A record's weight: its two words, mixed. A lost, duplicated or torn
/// record changes the sum of weights.
inline std::uint64_t weigh(const iocm::completion& c) noexcept {
  std::uint64_t words[2];
  std::memcpy(words, &c, sizeof words);
  return words[0] * 3 + words[1];
}

/// The gate's own test (bench/gate/CMakeLists.txt) builds the program a
/// second time with IOCM_PERF_GATE_SLOWDOWN=n: n more instructions before
/// every queue or engine call measured, a regression the gate must report.
/// Neither the queue nor the engine has such a hook.
inline void slowdown() noexcept {
#ifdef IOCM_PERF_GATE_SLOWDOWN
  for (int i = 0; i < IOCM_PERF_GATE_SLOWDOWN; ++i) asm volatile("nop");
#endif
}

struct engine_result {
  std::uint64_t records = 0;
  std::uint64_t sum = 0;
};

/// Unmeasured iterations before the measured ones: the engine's first
/// submissions touch memory and code the steady state does not.
inline constexpr std::uint64_t engine_warmup = 256;

engine_result engine_post(std::uint64_t iterations, std::uint64_t first,
                          const iocm::completion* table, std::size_t size);
engine_result engine_nop(std::uint64_t iterations, std::uint64_t first,
                         const iocm::completion* table, std::size_t size);
engine_result engine_read4k(std::uint64_t iterations, std::uint64_t first,
                            const iocm::completion* table, std::size_t size);

}  // namespace iocm_gate
