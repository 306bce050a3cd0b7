// The composition unit: the engine core asks for a poller, platform/ decides
// which backend builds it. Today that is io_uring only; the epoll fallback
// will be chosen here by really creating one when io_uring is refused.
#include "pollers.h"

namespace iocm::detail {

std::unique_ptr<poller> make_poller(poller_setup setup) {
  return make_uring_poller(std::move(setup));
}

}  // namespace iocm::detail
