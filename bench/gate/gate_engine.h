// The deterministic tier's engine cases (gate_engine.cpp), as
// gate_bench.cpp runs them: each carries the records table[i % size] for i in
// [first, first + iterations) through a pumped engine, measuring those
// iterations under callgrind after `first` unmeasured ones, and returns how
// many came out right and the sum of their weights (gate_bench.cpp's weigh).
#pragma once

#include <cstddef>
#include <cstdint>

#include "iocm/completion.h"

namespace iocm_gate {

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
