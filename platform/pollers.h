// The poller backends platform/ provides; backends.cpp lists them for the
// engine core (backend.h).
#pragma once

#include <memory>

#include "poller.h"

namespace iocm::detail {

/// An io_uring poller; its start() answers E_OUTOFMEMORY, or
/// HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) when the kernel refuses io_uring
/// or the requested setup.
std::unique_ptr<poller> make_uring_poller(poller_setup setup);
/// An epoll poller; its start() answers E_OUTOFMEMORY when epoll or its
/// eventfd cannot be had.
std::unique_ptr<poller> make_epoll_poller(poller_setup setup);

}  // namespace iocm::detail
