// Where the engine's threads and memory go: a machine description (the
// topology, from hwloc in platform/ or from a synthetic/XML description) and
// the plan computed from it. Pure data and pure functions: no OS header, so
// tests assert plans for machines we do not have (docs/NUMA.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "iocm/host_io.h"

namespace iocm::detail {

/// Parses a CPU list such as "0-3,8" (Linux cpuset syntax: comma-separated
/// numbers and inclusive ranges, blanks around items allowed) into sorted,
/// unique numbers. On failure returns false and says what is wrong in *why.
bool parse_cpu_list(std::string_view text, std::vector<int>& cpus, std::string& why);
/// The shortest list for a set of CPUs: {0,1,2,3,8} -> "0-3,8"; {} -> "none".
std::string format_cpu_list(std::vector<int> cpus);

/// A machine as the plan sees it. Indexes (core, node, package) are logical:
/// 0.. in topology order; CPUs and nodes also carry the OS's numbers, which
/// are what pinning and memory binding use.
struct topology {
  struct pu {
    int os_index = 0;      ///< the CPU number the kernel uses
    unsigned core = 0;     ///< logical index of its core
    unsigned node = 0;     ///< logical index of its NUMA node
    unsigned package = 0;  ///< logical index of its package
  };
  std::vector<pu> pus;                 ///< every CPU, in topology order
  std::vector<int> node_os;            ///< OS number of each NUMA node, by logical index
  std::vector<unsigned> node_package;  ///< package of each NUMA node, by logical index
  std::vector<int> allowed;            ///< CPUs the process may run on, sorted
  std::string source;                  ///< "this machine", "synthetic:...", "xml:..."
  bool this_machine = true;            ///< false for a described (injected) machine
};

/// The most pollers the default (one per usable core) makes.
inline constexpr unsigned max_default_pollers = 256;

/// What the configuration asks of the plan.
struct placement_request {
  std::vector<int> cpus;    ///< empty: every allowed CPU
  std::string cpus_origin;  ///< how to name the CPU list in messages, e.g. IOCM_CPUS="0-3"
  unsigned pollers = 0;     ///< 0: one per usable core, at most max_default_pollers
  std::uint32_t policy = IOCM_PLACEMENT_SPREAD;  ///< compact or spread
};

/// The plan: pollers on CPUs, one queue shard per NUMA node that has a
/// poller, notifiers spread over the shards.
struct placement_plan {
  struct shard {
    int node_os = 0;                 ///< the node whose memory holds this shard
    std::vector<int> cpus;           ///< usable CPUs of the node
    std::vector<int> notifier_cpus;  ///< where its notifiers go, CPUs without a poller first
    unsigned pollers = 0;            ///< pollers that publish into it
  };
  struct poller {
    int cpu = 0;
    unsigned shard = 0;
  };
  std::vector<shard> shards;
  std::vector<poller> pollers;
  /// By CPU number: the shard a record posted from that CPU goes to (-1
  /// when the CPU's node has no shard; shard 0 then).
  std::vector<std::int16_t> shard_of_cpu;
  std::vector<int> usable;  ///< the CPUs the plan may use, sorted
  unsigned usable_cores = 0;
  std::uint32_t policy = IOCM_PLACEMENT_SPREAD;
  std::string source;  ///< the topology's source
  bool this_machine = true;

  /// Notifier i's home shard: notifiers are dealt to shards in turn, so any
  /// thread limit is split evenly (to within one) across the nodes.
  unsigned notifier_shard(unsigned i) const noexcept {
    return i % static_cast<unsigned>(shards.size());
  }
  /// Notifier i's CPU, in its home shard's node.
  int notifier_cpu(unsigned i) const noexcept {
    const shard& s = shards[notifier_shard(i)];
    return s.notifier_cpus[(i / shards.size()) % s.notifier_cpus.size()];
  }
  /// The shard for work that starts on `cpu` (posts).
  unsigned shard_for_cpu(int cpu) const noexcept {
    if (cpu < 0 || static_cast<std::size_t>(cpu) >= shard_of_cpu.size()) return 0;
    const int s = shard_of_cpu[static_cast<std::size_t>(cpu)];
    return s < 0 ? 0u : static_cast<unsigned>(s);
  }
};

/// Computes the plan (docs/NUMA.md, "The plan"). False, with *why naming
/// the offending value, when the request cannot be met on this topology.
bool make_plan(const topology& topo, const placement_request& request, placement_plan& plan,
               std::string& why);

/// What can be applied on the machine the engine runs on: the CPUs threads
/// can be pinned to and the NUMA nodes memory can be bound to (online, and
/// allowed by the process's cpuset).
struct placement_reach {
  std::vector<int> cpus;   ///< sorted
  std::vector<int> nodes;  ///< sorted
  bool pinning = true;     ///< false under IOCM_NO_PINNING: nothing is pinned
  bool can_pin(int cpu) const noexcept;
  bool can_bind(int node) const noexcept;
};

/// The one warning for a plan that cannot be fully applied (any poller's or
/// possible notifier's CPU, any shard's node), or "" when it can.
std::string unreachable_warning(const placement_plan& plan, const placement_reach& reach);

/// A table of which thread runs where and which memory sits on which node,
/// for `max_threads` notifiers (what `iocm-bench topology` prints).
std::string describe_plan(const placement_plan& plan, const placement_reach& reach,
                          unsigned max_threads);

/// Where a thread found itself: "pinned to CPU 3", "not pinned" (cpu -1)
/// or "not started yet" (cpu -2).
std::string describe_pinning(int cpu);
const char* placement_name(std::uint32_t policy) noexcept;

}  // namespace iocm::detail
