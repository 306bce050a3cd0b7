// The poller backends, as the engine core sees them: a registry that
// platform/ fills (platform/backends.cpp). Each backend says its name, how
// to tell whether it can run here (by really trying: io_uring creates a
// ring), the defaults of the config options that are its own and how to
// check them, and how to build a poller.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "iocm/host_io.h"
#include "poller.h"

namespace iocm::detail {

struct poller_backend {
  const char* name;  // IOCM_BACKEND's value for it: "uring", "epoll"
  std::uint32_t id;  // its iocm_backend
  /// Fills in the defaults of this backend's options (iocm_config_init).
  void (*set_defaults)(iocm_config& config);
  /// Whether it can run here; when not, *why says why in a sentence.
  bool (*available)(std::string& why);
  /// Checks the options of `config` that are this backend's, and settles
  /// what depends on others (a pumped engine's ring setup). Every backend
  /// checks its own whichever runs, so a config means the same everywhere.
  /// False, with *why naming the value, when one is out of range.
  bool (*check_options)(iocm_config& config, std::string& why);
  /// Builds a poller (not started). Throws std::bad_alloc.
  std::unique_ptr<poller> (*create)(poller_setup setup);
};

/// Every backend, the preferred first: IOCM_BACKEND_AUTO takes the first
/// available.
std::span<const poller_backend> poller_backends() noexcept;

/// The backend with iocm_backend `id`, or null.
inline const poller_backend* find_backend(std::uint32_t id) noexcept {
  for (const poller_backend& b : poller_backends())
    if (b.id == id) return &b;
  return nullptr;
}

}  // namespace iocm::detail
