// iocm/detail/fence.h — the StoreLoad fence of iocm's sleep/wake handshakes
// (a store, then a load of another variable, on both sides).
#pragma once

#include <atomic>

namespace iocm::detail {

#if defined(__SANITIZE_THREAD__)
inline std::atomic<int> tsan_fence_word{0};
#endif

/// A full fence. ThreadSanitizer does not model atomic_thread_fence, so
/// under it a seq_cst RMW on one shared word stands in: the same full
/// barrier on the hardware, and an edge TSan understands.
inline void store_load_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
  tsan_fence_word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace iocm::detail
