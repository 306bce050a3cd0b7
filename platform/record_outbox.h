// The completion records a poller has made and not yet published into its
// lane of the completion queue, in the order it made them: a buffer, and
// beyond it (when the lane has no room, because notifiers are slow) the
// operations themselves, linked through op_state::next, each keeping its
// record in fields it no longer needs (aux: the error; length: the bytes;
// a notifier reads only port_slot and counter). So a poller never stops
// taking completions from the kernel, never blocks and never allocates:
// backpressure holds records here, and cancels and Unbinds still flow.
#pragma once

#include <cstddef>
#include <cstdint>

#include "completion_queue.h"
#include "iocm/completion.h"
#include "op_state.h"
#include "poller.h"

namespace iocm::detail {

class record_outbox {
 public:
  /// Queues op's record, after every record queued before.
  void add(op_state& op, const completion& record) noexcept {
    if (overflow_.empty() && count_ < capacity) {
      buffer_[count_++] = record;
      return;
    }
    op.aux = record.error;
    op.length = record.bytes;
    overflow_.push(&op);
  }

  /// Publishes what it can, in order; true once nothing is left (false: the
  /// lane is full for now).
  /// `wake`: wake a notifier for them (poller_host::publish).
  [[gnu::always_inline]] bool publish(poller_host& host, completion_queue::producer_token& lane,
                                      poller_metrics& m, bool wake = true) noexcept {
    for (;;) {
      while (published_ < count_) {
        const std::size_t placed =
            host.publish(lane, buffer_ + published_, count_ - published_, m, wake);
        if (placed == 0) return false;
        published_ += placed;
      }
      count_ = published_ = 0;
      if (overflow_.empty()) return true;
      while (!overflow_.empty() && count_ < capacity) {
        op_state* op = overflow_.pop();
        buffer_[count_++] = {static_cast<std::uint32_t>(op->aux), op->length, overlapped_of(op)};
      }
    }
  }

  /// Takes the oldest record not yet published, for its poller to deliver
  /// itself (inline delivery); false when there is none.
  bool take_first(completion& record) noexcept {
    if (published_ == count_) return false;
    record = buffer_[published_++];
    if (published_ == count_ && overflow_.empty()) count_ = published_ = 0;
    return true;
  }

  bool empty() const noexcept { return count_ == published_ && overflow_.empty(); }
  /// At least this many records wait (the buffer's; more when some wait in
  /// the operations).
  std::size_t waiting() const noexcept {
    return count_ - published_ + (overflow_.empty() ? 0 : capacity);
  }

 private:
  static constexpr std::size_t capacity = 256;
  completion buffer_[capacity];
  std::size_t count_ = 0, published_ = 0;
  op_fifo overflow_;  // oldest first
};

}  // namespace iocm::detail
