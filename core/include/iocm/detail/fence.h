// iocm/detail/fence.h — the StoreLoad fence of iocm's sleep/wake handshakes
// (each side stores, then loads what the other side stores).
#pragma once

#include <atomic>

namespace iocm::detail {

/// A full fence, between one side's store and its load of the other side's
/// word in the handshake that `word` belongs to (a sleeper's flag or count).
///
/// ThreadSanitizer does not model atomic_thread_fence, so under it a
/// seq_cst read-modify-write of `word` itself, which leaves it unchanged,
/// stands in: the same full barrier on the hardware, and an edge TSan
/// understands, but only between the two sides of this one handshake (the
/// other side's fence, or its seq_cst RMW, is on the same word). A single
/// process-wide word would order every pair of threads that ever fence and
/// hide races elsewhere (docs/RELIABILITY.md, "What TSan cannot see").
template <class T>
inline void store_load_fence([[maybe_unused]] std::atomic<T>& word) noexcept {
#if defined(__SANITIZE_THREAD__)
  word.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

}  // namespace iocm::detail
