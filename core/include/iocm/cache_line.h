// iocm/cache_line.h — the cache-line size iocm lays its shared state out by.
//
// iocm owns this constant instead of using
// std::hardware_destructive_interference_size: that value may change with
// compiler flags (GCC warns about exactly this), and it sizes structures that
// are part of iocm's ABI and of its benchmarks' layout.
#pragma once

#include <cstddef>

namespace iocm {

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
inline constexpr std::size_t cache_line_size = 64;
#elif defined(__aarch64__)
// Neoverse and Apple cores move lines in 64-byte units but prefetch pairs;
// 64: a completion record (16 bytes) and its sequence word fill a 32-byte
// lane slot, two slots to a line, which the completion path relies on.
inline constexpr std::size_t cache_line_size = 64;
#elif defined(__powerpc64__)
inline constexpr std::size_t cache_line_size = 128;
#elif defined(__s390x__)
inline constexpr std::size_t cache_line_size = 256;
#else
inline constexpr std::size_t cache_line_size = 64;
#endif

static_assert((cache_line_size & (cache_line_size - 1)) == 0,
              "cache_line_size must be a power of two");

}  // namespace iocm
