// Test records that say who made them: producer id and sequence number.
#pragma once

#include <cstdint>

#include "iocm/completion.h"

namespace iocm_test {

inline iocm::completion make_record(std::uint32_t producer, std::uint32_t seq) {
  // overlapped repeats both, so a torn or mixed-up record is caught.
  const auto tag = (std::uint64_t{producer} << 32) | seq;
  return iocm::completion{producer, seq, reinterpret_cast<void*>(static_cast<std::uintptr_t>(tag))};
}

inline bool record_intact(const iocm::completion& c) {
  const auto tag = (std::uint64_t{c.error} << 32) | c.bytes;
  return reinterpret_cast<std::uintptr_t>(c.overlapped) == tag;
}

}  // namespace iocm_test
