// The backend registry (core/src/backend.h): io_uring first, epoll as the
// fallback wherever io_uring cannot be set up (docs/ENGINE.md, "The epoll
// backend").
#include <string>

#include "backend.h"
#include "pollers.h"
#include "uring_setup.h"

namespace iocm::detail {

namespace {

void epoll_defaults(iocm_config&) {}                 // it has no options
bool epoll_available(std::string&) { return true; }  // Linux has had epoll since 2.6
bool epoll_check_options(iocm_config&, std::string&) { return true; }  // it has none

// Constant-initialized: no order-of-initialization question at start-up.
constexpr poller_backend all_backends[] = {
    {"uring", IOCM_BACKEND_URING, uring_defaults, uring_available, uring_check_options,
     make_uring_poller},
    {"epoll", IOCM_BACKEND_EPOLL, epoll_defaults, epoll_available, epoll_check_options,
     make_epoll_poller},
};

}  // namespace

std::span<const poller_backend> poller_backends() noexcept { return all_backends; }

}  // namespace iocm::detail
