// The io_uring backend's setup: its config options, whether io_uring can be
// used here, and the ring each poller creates (probing the fastest setup the
// kernel accepts).
#pragma once

#include <liburing.h>

#include <cstdint>
#include <string>

#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "syscalls.h"

namespace iocm::detail {

/// io_uring's defaults: a 256-entry ring, the fastest setup the kernel
/// accepts (IOCM_RING_PROBE).
void uring_defaults(iocm_config& config);
/// The backend registry's check of io_uring's options: ring_entries and
/// ring_setup, and a pumped engine's ring (any thread may enter it: plain).
bool uring_check_options(iocm_config& config, std::string& why);
/// Whether io_uring can really be used here (a probe creates a ring); when
/// not, *why says why in a sentence.
bool uring_available(std::string& why);
/// Creates `ring` with `entries` SQ entries and twice as many CQ entries,
/// in setup `requested` (IOCM_RING_PROBE: the first the kernel accepts of
/// DEFER_TASKRUN, COOP_TASKRUN, plain); *used says which. E_OUTOFMEMORY, or
/// HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) when the kernel refuses.
hosting::HRESULT create_ring(const syscall_table& sys, io_uring& ring, std::uint32_t entries,
                             std::uint32_t requested, std::uint32_t& used) noexcept;

}  // namespace iocm::detail
