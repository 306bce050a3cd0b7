// The OVERLAPPED the tests and the fuzz harness submit. There is one type of
// OVERLAPPED with iocm's host area after it: the public iocm::overlapped
// (iocm/engine.h), constructed ready (as if InitializeHostOverlapped had
// run; a test may run it again) and not copyable. What a test keeps with an
// operation goes in a type derived from it, and holder_of finds that again
// from the OVERLAPPED* that OnComplete hands back.
#pragma once

#include <cstdint>

#include "iocm/engine.h"

namespace iocm_test {

/// The T (derived from iocm::overlapped) whose OVERLAPPED is at ov: the
/// OVERLAPPED is iocm::overlapped's first member, so their addresses are
/// one, and T's iocm::overlapped is a base.
template <class T>
T* holder_of(void* ov) noexcept {
  return static_cast<T*>(static_cast<iocm::overlapped*>(ov));
}

/// An operation's OVERLAPPED with its host area, and the test's tag for it.
struct test_overlapped : iocm::overlapped {
  std::uint64_t tag = 0;
};

}  // namespace iocm_test
