// The io_uring backend's setup (uring_setup.h).
#include "uring_setup.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr std::uint32_t max_ring_entries = 32768;

/// Tries one ring setup; 0 or -errno.
int try_setup(const syscall_table& sys, io_uring& ring, std::uint32_t entries,
              std::uint32_t level) {
  io_uring_params p{};
  switch (level) {
    case IOCM_RING_DEFER_TASKRUN:
      p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
      break;
    case IOCM_RING_COOP_TASKRUN:
      p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
      break;
    default:
      break;
  }
  p.flags |= IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 2;
  const int r = sys.uring_setup(entries, &ring, &p);
  if (r == 0 && (p.features & IORING_FEAT_NODROP) == 0) {
    // Without NODROP an overflowing CQ loses completions; iocm also never
    // lets it overflow, but refuses to run on a kernel that old (< 5.5).
    io_uring_queue_exit(&ring);
    return -ENOSYS;
  }
  return r;
}

}  // namespace

void uring_defaults(iocm_config& c) {
  c.ring_entries = 256;
  c.ring_setup = IOCM_RING_PROBE;
}

bool uring_check_options(iocm_config& c, std::string& why) {
  const std::uint32_t entries = c.ring_entries;
  if (entries < 2 || entries > max_ring_entries || !std::has_single_bit(entries)) {
    why = "ring_entries " + std::to_string(entries) + " is not a power of two in 2..32768";
    return false;
  }
  if (c.ring_setup > IOCM_RING_PLAIN) {
    why = "ring_setup " + std::to_string(c.ring_setup) + " is not an iocm_ring_setup value";
    return false;
  }
  if ((c.flags & IOCM_PUMPED) != 0) {
    // One poller, run by whichever thread pumps: a ring tied to the thread
    // that made it (SINGLE_ISSUER) or running its work only when that
    // thread enters the kernel (COOP_TASKRUN) would not do.
    if (c.ring_setup == IOCM_RING_DEFER_TASKRUN || c.ring_setup == IOCM_RING_COOP_TASKRUN) {
      why = "ring_setup " + std::to_string(c.ring_setup) +
            " with IOCM_PUMPED (any thread may pump: IOCM_RING_PROBE or IOCM_RING_PLAIN)";
      return false;
    }
    c.ring_setup = IOCM_RING_PLAIN;
    return true;
  }
  // Inline delivery: while a poller's thread is inside OnComplete, the ring
  // monitor may have to drive its ring, so the ring is tied to no thread
  // (not SINGLE_ISSUER, which DEFER_TASKRUN needs). Such a ring delivers on
  // notifiers only. The probe takes the plain setup: the kernel then
  // interrupts even a callback that computes to post its completions
  // (COOP_TASKRUN waits for its next interrupt; docs/ENGINE.md).
  if (c.ring_setup == IOCM_RING_DEFER_TASKRUN)
    c.flags |= IOCM_HANDOFF;
  else if (c.ring_setup == IOCM_RING_PROBE && (c.flags & IOCM_HANDOFF) == 0)
    c.ring_setup = IOCM_RING_PLAIN;
  return true;
}

bool uring_available(std::string& why) {
  io_uring ring{};
  const int r = try_setup(syscalls_in_use(), ring, 2, IOCM_RING_PLAIN);
  if (r == 0) {
    io_uring_queue_exit(&ring);
    return true;
  }
  why = "io_uring_setup failed: " + std::string(std::strerror(-r));
  std::ifstream f("/proc/sys/kernel/io_uring_disabled");
  int disabled = 0;
  if (f >> disabled && disabled != 0)
    why += disabled == 2 ? " (kernel.io_uring_disabled = 2: disabled for everyone)"
                         : " (kernel.io_uring_disabled = 1: only for io_uring_group members)";
  else if (r == -ENOSYS)
    why += " (kernel without io_uring, without IORING_FEAT_NODROP, or a seccomp filter)";
  else if (r == -EPERM)
    why += " (refused: a seccomp filter or a security module)";
  return false;
}

HRESULT create_ring(const syscall_table& sys, io_uring& ring, std::uint32_t entries,
                    std::uint32_t requested, std::uint32_t& used) noexcept {
  int r = -EINVAL;
  if (requested == IOCM_RING_PROBE) {
    for (std::uint32_t level : {IOCM_RING_DEFER_TASKRUN, IOCM_RING_COOP_TASKRUN, IOCM_RING_PLAIN}) {
      r = try_setup(sys, ring, entries, level);
      if (r == 0) {
        used = level;
        break;
      }
      if (r == -ENOMEM) break;
    }
  } else {
    r = try_setup(sys, ring, entries, requested);
    used = requested;
  }
  if (r != 0) return r == -ENOMEM ? E_OUTOFMEMORY : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
  return S_OK;
}

}  // namespace iocm::detail
