// The machine as hwloc sees it (or as a synthetic/XML description says),
// NUMA memory binding and the current CPU: the OS side of placement
// (core/src/placement.h, docs/NUMA.md).
#include <hwloc.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>

#include "os.h"
#include "placement.h"

namespace iocm::detail::os {

namespace {

struct hwloc_guard {
  hwloc_topology_t t = nullptr;
  ~hwloc_guard() {
    if (t != nullptr) hwloc_topology_destroy(t);
  }
};

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

std::size_t page_size() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

/// Pages preferred on one node. MPOL_PREFERRED rather than MPOL_BIND: a full
/// node lends memory elsewhere instead of failing the engine.
class node_resource final : public std::pmr::memory_resource {
 public:
  explicit node_resource(int node) : node_(node) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (alignment > page_size()) throw std::bad_alloc();
    const std::size_t len = round(bytes);
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Before the first touch, so that every page is placed on the node.
    // A refusal leaves first-touch placement; bindable_nodes() vetted the node.
    constexpr std::size_t bits = 8 * sizeof(unsigned long);
    unsigned long mask[1024 / bits] = {};
    if (node_ >= 0 && static_cast<std::size_t>(node_) < 1024) {
      mask[static_cast<std::size_t>(node_) / bits] = 1UL
                                                     << (static_cast<std::size_t>(node_) % bits);
      ::syscall(SYS_mbind, p, len, MPOL_PREFERRED, mask, 1024UL, 0U);
    }
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t) override {
    ::munmap(p, round(bytes));
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
  static std::size_t round(std::size_t bytes) noexcept {
    const std::size_t ps = page_size();
    return (bytes + ps - 1) / ps * ps;
  }
  int node_;
};

/// Checks the size of a synthetic description before hwloc builds it: each
/// arity is the number of objects under one object of the level above, and
/// their product is the number of CPUs (the last level is the PUs). Parsed
/// as hwloc 2 parses it: an optional "(attributes)" of the root, then levels
/// "[type:]count[(attributes)]", and memory children "[...]" that are not a
/// level. What does not parse is left to hwloc, which refuses it.
bool synthetic_within_limits(const char* description, std::string& why) {
  const char* p = description;
  auto skip_past = [&p](char close) {
    const char* end = std::strchr(p, close);
    p = end != nullptr ? end + 1 : p + std::strlen(p);
  };
  if (*p == '(') skip_past(')');
  std::uint64_t cpus = 1;
  bool overflow = false;
  for (;;) {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    if (*p == '[') {
      skip_past(']');
      continue;
    }
    const char* level = p;
    if (*p < '0' || *p > '9') {
      const char* colon = std::strchr(p, ':');
      if (colon == nullptr) return true;
      p = colon + 1;
    }
    char* end = nullptr;
    const unsigned long long n = std::strtoull(p, &end, 0);  // base 0, as hwloc reads it
    if (end == p) return true;
    if (n > max_synthetic_arity) {
      why = "puts " + std::to_string(n) + " objects under one object (\"" +
            std::string(level, static_cast<const char*>(end)) + "\"), above the limit of " +
            std::to_string(max_synthetic_arity);
      return false;
    }
    if (n != 0 && cpus > UINT64_MAX / n) overflow = true;
    cpus *= n;
    p = end;
    if (*p == '(') skip_past(')');
  }
  if (overflow || cpus > max_described_cpus) {
    why = "describes " + (overflow ? "more than 2^64" : std::to_string(cpus)) +
          " CPUs (the product of its arities), above the limit of " +
          std::to_string(max_described_cpus);
    return false;
  }
  return true;
}

/// Checks an XML description's file before hwloc reads all of it.
bool xml_within_limits(const char* path, std::string& why) {
  struct stat st {};
  if (::stat(path, &st) != 0) return true;  // hwloc says why it cannot read it
  if (!S_ISREG(st.st_mode)) {
    why = "names an XML description that is not a regular file";
    return false;
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_topology_xml_bytes) {
    why = "names an XML file of " + std::to_string(st.st_size) + " bytes, above the limit of " +
          std::to_string(max_topology_xml_bytes) + " (16 MiB)";
    return false;
  }
  return true;
}

}  // namespace

int current_cpu() noexcept { return ::sched_getcpu(); }

bool load_topology(const char* spec, topology& out, std::string& why) {
  const std::string s = spec == nullptr ? "" : spec;
  hwloc_guard g;
  if (hwloc_topology_init(&g.t) != 0) {
    why = "hwloc could not be initialised";
    return false;
  }
  // Keep CPUs a cgroup forbids in the topology (and out of `allowed`), so
  // that naming one is told apart from naming a CPU the machine lacks.
  hwloc_topology_set_flags(g.t, HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED);
  if (starts_with(s, "synthetic:")) {
    if (!synthetic_within_limits(s.c_str() + 10, why)) return false;
    if (hwloc_topology_set_synthetic(g.t, s.c_str() + 10) != 0) {
      why =
          "is not a synthetic topology hwloc understands (e.g. synthetic:pack:2 numa:2 core:4 "
          "pu:2)";
      return false;
    }
  } else if (starts_with(s, "xml:")) {
    if (!xml_within_limits(s.c_str() + 4, why)) return false;
    if (hwloc_topology_set_xml(g.t, s.c_str() + 4) != 0) {
      why = "names an XML file hwloc cannot read (" + std::string(std::strerror(errno)) + ")";
      return false;
    }
  } else if (!s.empty()) {
    why = "is neither synthetic:<description> nor xml:<path>";
    return false;
  } else {
    // hwloc itself reads these in place of discovering the machine: the
    // same limits apply to them.
    auto within = [&why](const char* variable, bool (*check)(const char*, std::string&)) {
      const char* value = std::getenv(variable);
      std::string what;
      if (value == nullptr || check(value, what)) return true;
      why = "comes from " + std::string(variable) + "=\"" + value + "\", which " + what;
      return false;
    };
    if (!within("HWLOC_SYNTHETIC", synthetic_within_limits) ||
        !within("HWLOC_XMLFILE", xml_within_limits))
      return false;
  }
  if (hwloc_topology_load(g.t) != 0) {
    why = "could not be loaded by hwloc (" + std::string(std::strerror(errno)) + ")";
    return false;
  }
  if (!s.empty() || hwloc_topology_is_thissystem(g.t) == 0) {
    const auto cpus = static_cast<std::uint64_t>(hwloc_get_nbobjs_by_type(g.t, HWLOC_OBJ_PU));
    const auto nodes =
        static_cast<std::uint64_t>(hwloc_get_nbobjs_by_type(g.t, HWLOC_OBJ_NUMANODE));
    if (cpus > max_described_cpus) {
      why = "describes " + std::to_string(cpus) + " CPUs, above the limit of " +
            std::to_string(max_described_cpus);
      return false;
    }
    if (nodes > max_described_nodes) {
      why = "describes " + std::to_string(nodes) + " NUMA nodes, above the limit of " +
            std::to_string(max_described_nodes);
      return false;
    }
  }
  out = topology{};
  out.this_machine = s.empty() && hwloc_topology_is_thissystem(g.t) != 0;
  out.source = s.empty() ? "this machine" : s;

  const int nodes = hwloc_get_nbobjs_by_type(g.t, HWLOC_OBJ_NUMANODE);
  std::vector<hwloc_obj_t> node_objs;
  for (int i = 0; i < nodes; ++i) {
    hwloc_obj_t n = hwloc_get_obj_by_type(g.t, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    node_objs.push_back(n);
    out.node_os.push_back(static_cast<int>(n->os_index));
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(g.t, HWLOC_OBJ_PACKAGE, n);
    out.node_package.push_back(pkg != nullptr ? pkg->logical_index : 0);
  }
  if (node_objs.empty()) {  // hwloc 2 always has one; keep the plan total anyway
    out.node_os.push_back(0);
    out.node_package.push_back(0);
  }
  const int pus = hwloc_get_nbobjs_by_type(g.t, HWLOC_OBJ_PU);
  for (int i = 0; i < pus; ++i) {
    hwloc_obj_t pu = hwloc_get_obj_by_type(g.t, HWLOC_OBJ_PU, static_cast<unsigned>(i));
    topology::pu p;
    p.os_index = static_cast<int>(pu->os_index);
    hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(g.t, HWLOC_OBJ_CORE, pu);
    // A machine without core objects: every CPU is its own core.
    p.core = core != nullptr ? core->logical_index : 1'000'000 + pu->logical_index;
    hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(g.t, HWLOC_OBJ_PACKAGE, pu);
    p.package = pkg != nullptr ? pkg->logical_index : 0;
    for (std::size_t n = 0; n < node_objs.size(); ++n)
      if (hwloc_bitmap_isset(node_objs[n]->cpuset, pu->os_index)) {
        p.node = static_cast<unsigned>(n);
        break;
      }
    out.pus.push_back(p);
  }
  // Allowed: what the topology allows (cgroups), and for this machine also
  // what the process's affinity mask allows.
  hwloc_const_cpuset_t allowed = hwloc_topology_get_allowed_cpuset(g.t);
  std::vector<int> affinity;
  if (out.this_machine) {
    int cpus[1024];
    const unsigned n = std::min(1024u, usable_cpus(cpus, 1024));
    affinity.assign(cpus, cpus + n);
  }
  for (const auto& p : out.pus) {
    if (!hwloc_bitmap_isset(allowed, static_cast<unsigned>(p.os_index))) continue;
    if (out.this_machine &&
        std::find(affinity.begin(), affinity.end(), p.os_index) == affinity.end())
      continue;
    out.allowed.push_back(p.os_index);
  }
  std::sort(out.allowed.begin(), out.allowed.end());
  return true;
}

std::vector<int> bindable_nodes() {
  std::ifstream f("/sys/devices/system/node/online");
  std::string text;
  std::vector<int> online;
  std::string why;
  if (!f || !std::getline(f, text) || !parse_cpu_list(text, online, why))
    return {0};  // a kernel without NUMA: everything is node 0
  // MPOL_F_MEMS_ALLOWED: the nodes this process's cpuset lets it use.
  constexpr std::size_t bits = 8 * sizeof(unsigned long);
  unsigned long mask[1024 / bits] = {};
  if (::syscall(SYS_get_mempolicy, nullptr, mask, 1024UL, nullptr, MPOL_F_MEMS_ALLOWED) != 0)
    return online;
  std::vector<int> nodes;
  for (int n : online)
    if (n < 1024 &&
        (mask[static_cast<std::size_t>(n) / bits] >> (static_cast<std::size_t>(n) % bits)) & 1UL)
      nodes.push_back(n);
  return nodes;
}

std::unique_ptr<std::pmr::memory_resource> node_memory(int node) {
  return std::make_unique<node_resource>(node);
}

int node_of_address(const void* p) noexcept {
  int node = -1;
  // MPOL_F_NODE | MPOL_F_ADDR: the node of the page at p.
  if (::syscall(SYS_get_mempolicy, &node, nullptr, 0UL, const_cast<void*>(p),
                MPOL_F_NODE | MPOL_F_ADDR) != 0)
    return -1;
  return node;
}

}  // namespace iocm::detail::os
