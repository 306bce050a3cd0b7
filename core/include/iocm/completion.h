// iocm/completion.h — the 16-byte completion record that flows from the
// pollers through the queue to the threads that call OnComplete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "iocm/cache_line.h"

namespace iocm {

/// One finished operation, exactly the three arguments of
/// ICLRIoCompletionManager::OnComplete.
struct completion {
  std::uint32_t error;  ///< Win32 error code; 0 on success.
  std::uint32_t bytes;  ///< bytes transferred.
  void* overlapped;     ///< the caller's own OVERLAPPED pointer.
};

static_assert(sizeof(void*) == 8, "iocm targets 64-bit Linux");
static_assert(sizeof(completion) == 16,
              "a completion record is 16 bytes: with its sequence word, two to a cache line");
static_assert(alignof(completion) == 8, "records pack without padding");
static_assert(offsetof(completion, error) == 0 && offsetof(completion, bytes) == 4 &&
                  offsetof(completion, overlapped) == 8,
              "field order is error, bytes, overlapped (OnComplete's argument order)");
static_assert(cache_line_size % sizeof(completion) == 0, "records never straddle a cache line");
static_assert(std::is_trivially_copyable_v<completion>, "records are copied as bytes");
static_assert(std::is_standard_layout_v<completion>, "records have a C layout");

}  // namespace iocm
