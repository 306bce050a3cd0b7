// The op-id ledger every stress and reliability test keeps: each operation
// a test submits has an id; the test counts it accepted (the engine answered
// IOCM_E_IO_PENDING) or refused, and OnComplete counts it completed, from any
// thread, in any order. An id may be used again (an OVERLAPPED reused): the
// counts add up. report() writes one line,
//   [ledger] <name>: A accepted, C completed, L lost, D duplicated, U unexpected, R refused
// which scripts/test sums over every run, and says whether the ledger is
// clean: every accepted operation completed exactly once and no other did.
// No test framework here: the fuzz harness keeps one too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>

namespace iocm_test {

class op_ledger {
 public:
  struct tally {
    std::uint64_t accepted = 0, completed = 0, refused = 0;
    std::uint64_t lost = 0;        // accepted more often than completed
    std::uint64_t duplicated = 0;  // completed more often than accepted (and accepted)
    std::uint64_t unexpected = 0;  // completed, never accepted
    bool clean() const noexcept { return lost == 0 && duplicated == 0 && unexpected == 0; }
    tally& operator+=(const tally& o) noexcept {
      accepted += o.accepted;
      completed += o.completed;
      refused += o.refused;
      lost += o.lost;
      duplicated += o.duplicated;
      unexpected += o.unexpected;
      return *this;
    }
  };

  explicit op_ledger(std::size_t ids)
      : ids_(ids),
        accepted_(new std::atomic<std::uint32_t>[ids]()),
        completed_(new std::atomic<std::uint32_t>[ids]()) {}

  std::size_t size() const noexcept { return ids_; }
  void accepted(std::size_t id) noexcept { accepted_[id].fetch_add(1, std::memory_order_relaxed); }
  void refused(std::size_t) noexcept { refused_.fetch_add(1, std::memory_order_relaxed); }
  /// Counts a submission's answer; returns `was_accepted`.
  bool answered(std::size_t id, bool was_accepted) noexcept {
    if (was_accepted)
      accepted(id);
    else
      refused(id);
    return was_accepted;
  }
  /// From OnComplete. An id outside the ledger counts as unexpected.
  void completed(std::size_t id) noexcept {
    if (id >= ids_) {
      stray_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // Release pairs with completed_count()'s acquire: what the completion
    // wrote (an accepted socket, a buffer) is visible to whoever sees it.
    completed_[id].fetch_add(1, std::memory_order_release);
    completions_.fetch_add(1, std::memory_order_release);
  }
  /// Completions so far (for waiting on them).
  std::uint64_t completions() const noexcept {
    return completions_.load(std::memory_order_acquire);
  }
  /// How often id was accepted so far.
  std::uint32_t accepted_count(std::size_t id) const noexcept {
    return accepted_[id].load(std::memory_order_acquire);
  }
  /// How often id completed so far.
  std::uint32_t completed_count(std::size_t id) const noexcept {
    return completed_[id].load(std::memory_order_acquire);
  }
  /// Forgets everything (between fuzz inputs); no completion may be running.
  void reset() noexcept {
    for (std::size_t i = 0; i < ids_; ++i) {
      accepted_[i].store(0, std::memory_order_relaxed);
      completed_[i].store(0, std::memory_order_relaxed);
    }
    refused_.store(0, std::memory_order_relaxed);
    stray_.store(0, std::memory_order_relaxed);
    completions_.store(0, std::memory_order_relaxed);
  }

  tally count() const noexcept {
    tally t;
    for (std::size_t i = 0; i < ids_; ++i) {
      const std::uint64_t a = accepted_[i].load(std::memory_order_acquire);
      const std::uint64_t c = completed_[i].load(std::memory_order_acquire);
      t.accepted += a;
      t.completed += c;
      if (c < a) t.lost += a - c;
      if (c > a && a > 0) t.duplicated += c - a;
      if (c > 0 && a == 0) t.unexpected += c;
    }
    t.refused = refused_.load(std::memory_order_relaxed);
    t.unexpected += stray_.load(std::memory_order_relaxed);
    t.completed += stray_.load(std::memory_order_relaxed);
    return t;
  }

  /// Writes the ledger's line to `out`; true when it is clean.
  bool report(const char* name, std::FILE* out = stdout) const {
    const tally t = count();
    write(name, t, out);
    return t.clean();
  }
  static void write(const char* name, const tally& t, std::FILE* out) {
    std::fprintf(
        out,
        "[ledger] %s: %llu accepted, %llu completed, %llu lost, %llu duplicated, "
        "%llu unexpected, %llu refused\n",
        name, static_cast<unsigned long long>(t.accepted),
        static_cast<unsigned long long>(t.completed), static_cast<unsigned long long>(t.lost),
        static_cast<unsigned long long>(t.duplicated),
        static_cast<unsigned long long>(t.unexpected), static_cast<unsigned long long>(t.refused));
    std::fflush(out);
  }

 private:
  std::size_t ids_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> accepted_, completed_;
  std::atomic<std::uint64_t> refused_{0}, stray_{0}, completions_{0};
};

}  // namespace iocm_test
