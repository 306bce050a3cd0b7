// The few operating-system services the engine core needs, declared here and
// implemented in platform/ (core/src includes no OS header).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

namespace iocm::detail {
struct topology;
}

namespace iocm::detail::os {

/// What a descriptor is; decides end-of-file semantics (docs/ENGINE.md).
enum class handle_kind : std::uint8_t { file, pipe, socket, other };

/// The kind of an open descriptor, or false when fd is not open.
bool query_handle(int fd, handle_kind& kind) noexcept;

/// close(2), its answer ignored (a descriptor the engine owns).
void close_descriptor(int fd) noexcept;

/// The kernel's unique number for the socket fd names (SO_COOKIE), or 0
/// when fd is not a socket or the kernel cannot say.
std::uint64_t socket_cookie(int fd) noexcept;

/// One read (`out` false) or write of fd that must not wait: preadv2 or
/// pwritev2 with RWF_NOWAIT on a file or pipe (at `offset`; a file's
/// all-ones offset appends), recv or send with MSG_DONTWAIT on a socket.
/// Bytes moved, or -errno; -EAGAIN (or -EOPNOTSUPP: the descriptor cannot
/// say) when it would have to wait.
std::int32_t transfer_now(int fd, handle_kind kind, bool out, void* buffer, std::uint32_t length,
                          std::uint64_t offset) noexcept;
/// The errnos transfer_now answers when it would have to wait.
bool would_wait(std::int32_t result) noexcept;

/// Sleeps while *word == expected (spurious returns allowed).
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) noexcept;
/// Wakes one thread sleeping on word.
void futex_wake_one(std::atomic<std::uint32_t>& word) noexcept;

/// CPUs this process may run on, in order (at most `capacity` written);
/// returns how many there are.
unsigned usable_cpus(int* cpus, unsigned capacity) noexcept;
/// Pins the calling thread to one CPU; false if the kernel refused.
bool pin_current_thread(int cpu) noexcept;
/// The one CPU the calling thread's affinity mask allows, or -1 when it
/// allows several (unpinned) or cannot be read.
int pinned_cpu_of_current_thread() noexcept;
/// Clears O_NONBLOCK on fd again (the epoll poller sets it at Bind, through
/// its syscall table); best effort (fd may be closed already).
void clear_nonblocking(int fd) noexcept;

/// Blocks SIGPIPE in the calling thread: a write the poller issues to a
/// pipe or socket whose reader is gone must fail with EPIPE, not kill the
/// host process.
void block_sigpipe() noexcept;
/// The CPU the calling thread runs on now, or -1.
int current_cpu() noexcept;

/// The most a described topology may ask for (docs/NUMA.md). hwloc's time to
/// build a topology grows with the square of the widest level, and without
/// bounds a one-line description (pack:1000 numa:1000 core:1000 pu:1000)
/// keeps creation busy for minutes and more; within them hwloc loads in
/// under a second.
/// A synthetic description's arities are checked before hwloc sees it; an
/// XML file's size before it is read, and its CPUs and nodes once loaded.
inline constexpr std::uint64_t max_described_cpus = 4096;
inline constexpr std::uint64_t max_described_nodes = 1024;
/// Objects under any one object of a synthetic description.
inline constexpr std::uint64_t max_synthetic_arity = 1024;
inline constexpr std::uint64_t max_topology_xml_bytes = 16 << 20;

/// Loads a topology: null or "" for this machine (as hwloc discovers it,
/// restricted to the CPUs this process may use), "synthetic:<description>"
/// or "xml:<path>" for a described one. False, with the reason in *why,
/// when the description cannot be loaded or asks for more than the limits
/// above.
bool load_topology(const char* spec, topology& out, std::string& why);
/// NUMA nodes this process can bind memory to: online, and allowed by its
/// cpuset (cpuset.mems); sorted.
std::vector<int> bindable_nodes();
/// Memory preferred on `node` (mmap + mbind), or null when that cannot be
/// applied here. Allocations are page-granular: meant for a few big blocks.
std::unique_ptr<std::pmr::memory_resource> node_memory(int node);
/// The node holding the page at p (touched memory), or -1 if unknown.
int node_of_address(const void* p) noexcept;

/// Names the calling thread (visible in top, gdb); best effort.
void name_current_thread(const char* name) noexcept;

}  // namespace iocm::detail::os
