// An engine's configuration made whole, before anything is built: the
// config's fields checked (each backend checks its own, backend.h), the
// environment applied (IOCM_BACKEND, IOCM_CPUS, IOCM_POLLERS,
// IOCM_PLACEMENT, IOCM_TOPOLOGY), the backend chosen, the topology loaded
// and the placement planned (placement.h).
#pragma once

#include <string>

#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "placement.h"

namespace iocm::detail {

struct engine_setup {
  iocm_config config{};
  placement_plan plan;
  placement_reach reach;
  std::string notice;  // said once at IOCM_LOG_INFO (why epoll was chosen)
};

/// Validates `in` (null: defaults), applies the environment and plans the
/// placement. E_INVALIDARG with *why naming the value, or E_OUTOFMEMORY.
hosting::HRESULT prepare_setup(const iocm_config* in, engine_setup& out, std::string& why) noexcept;

}  // namespace iocm::detail
