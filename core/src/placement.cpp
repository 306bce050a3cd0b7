// The placement plan (docs/NUMA.md): pure functions over a topology.
#include "placement.h"

#include <algorithm>
#include <charconv>
#include <set>

namespace iocm::detail {

namespace {

constexpr int max_cpu_number = 1 << 20;  // far above any CPU_SETSIZE

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

bool parse_number(std::string_view s, int& out) {
  s = trim(s);
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && out >= 0 && out < max_cpu_number;
}

bool contains(const std::vector<int>& sorted, int v) {
  return std::binary_search(sorted.begin(), sorted.end(), v);
}

}  // namespace

bool parse_cpu_list(std::string_view text, std::vector<int>& cpus, std::string& why) {
  std::set<int> out;
  std::string_view rest = text;
  if (trim(rest).empty()) {
    why = "is empty; expected a CPU list like 0-3,8";
    return false;
  }
  while (true) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    const std::size_t dash = item.find('-');
    int lo = 0, hi = 0;
    bool ok;
    if (dash == std::string_view::npos) {
      ok = parse_number(item, lo);
      hi = lo;
    } else {
      ok = parse_number(item.substr(0, dash), lo) && parse_number(item.substr(dash + 1), hi) &&
           lo <= hi;
    }
    if (!ok) {
      why = "has \"" + std::string(item) + "\", which is not a CPU number or an ascending range " +
            "(expected a CPU list like 0-3,8)";
      return false;
    }
    for (int c = lo; c <= hi; ++c) out.insert(c);
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  cpus.assign(out.begin(), out.end());
  return true;
}

std::string format_cpu_list(std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  if (cpus.empty()) return "none";
  std::string s;
  for (std::size_t i = 0; i < cpus.size();) {
    std::size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!s.empty()) s += ',';
    s += std::to_string(cpus[i]);
    if (j > i) s += '-' + std::to_string(cpus[j]);
    i = j + 1;
  }
  return s;
}

const char* placement_name(std::uint32_t policy) noexcept {
  return policy == IOCM_PLACEMENT_COMPACT ? "compact" : "spread";
}

bool make_plan(const topology& topo, const placement_request& request, placement_plan& plan,
               std::string& why) {
  plan = placement_plan{};
  plan.policy = request.policy;
  plan.source = topo.source;
  plan.this_machine = topo.this_machine;
  if (topo.pus.empty() || topo.node_os.empty()) {
    why = "the topology (" + topo.source + ") has no CPU or no NUMA node";
    return false;
  }

  // 1. The CPUs the plan may use: allowed, and named by the request.
  std::vector<int> all;
  for (const auto& p : topo.pus) all.push_back(p.os_index);
  std::sort(all.begin(), all.end());
  if (!request.cpus.empty()) {
    std::vector<int> absent;
    for (int c : request.cpus)
      if (!contains(all, c)) absent.push_back(c);
    if (!absent.empty()) {
      why = request.cpus_origin + " names CPU " + format_cpu_list(absent) + ", which " +
            topo.source + " does not have (its CPUs: " + format_cpu_list(all) + ")";
      return false;
    }
  }
  const std::size_t nodes = topo.node_os.size();
  for (const auto& p : topo.pus)
    if (p.node >= nodes) {
      why = "the topology (" + topo.source + ") puts CPU " + std::to_string(p.os_index) +
            " on a NUMA node it does not list";
      return false;
    }
  std::vector<const topology::pu*> usable;
  for (const auto& p : topo.pus)
    if (contains(topo.allowed, p.os_index) &&
        (request.cpus.empty() || contains(request.cpus, p.os_index)))
      usable.push_back(&p);
  if (usable.empty()) {
    why = (request.cpus.empty() ? std::string("the allowed CPU set") : request.cpus_origin) +
          " leaves no CPU this process may run on (allowed: " + format_cpu_list(topo.allowed) + ")";
    return false;
  }
  for (const auto* p : usable) plan.usable.push_back(p->os_index);
  std::sort(plan.usable.begin(), plan.usable.end());

  // 2. Usable CPUs by node, then by core, in topology order.
  std::vector<std::vector<std::vector<int>>> cores_of(nodes);  // node -> core -> CPUs
  std::vector<std::vector<unsigned>> core_ids(nodes);
  for (const auto* p : usable) {
    auto& ids = core_ids[p->node];
    auto it = std::find(ids.begin(), ids.end(), p->core);
    if (it == ids.end()) {
      ids.push_back(p->core);
      cores_of[p->node].emplace_back();
      it = ids.end() - 1;
    }
    cores_of[p->node][static_cast<std::size_t>(it - ids.begin())].push_back(p->os_index);
  }
  for (const auto& n : cores_of) plan.usable_cores += static_cast<unsigned>(n.size());

  // 3. The order pollers take CPUs in: one CPU per core before any core's
  // second hardware thread; compact fills node after node, spread deals the
  // cores out over packages first, then over the nodes of each package.
  std::vector<std::size_t> node_order;
  if (request.policy == IOCM_PLACEMENT_COMPACT) {
    for (std::size_t n = 0; n < nodes; ++n) node_order.push_back(n);
  } else {
    std::vector<std::vector<std::size_t>> by_package;
    for (std::size_t n = 0; n < nodes; ++n) {
      const unsigned pkg = n < topo.node_package.size() ? topo.node_package[n] : 0;
      if (by_package.size() <= pkg) by_package.resize(pkg + 1);
      by_package[pkg].push_back(n);
    }
    for (std::size_t k = 0; node_order.size() < nodes; ++k)
      for (const auto& pkg : by_package)
        if (k < pkg.size()) node_order.push_back(pkg[k]);
  }
  std::size_t max_threads_per_core = 0, max_cores = 0;
  for (const auto& n : cores_of) {
    max_cores = std::max(max_cores, n.size());
    for (const auto& c : n) max_threads_per_core = std::max(max_threads_per_core, c.size());
  }
  std::vector<int> order;
  for (std::size_t t = 0; t < max_threads_per_core; ++t) {
    if (request.policy == IOCM_PLACEMENT_COMPACT) {
      for (std::size_t n : node_order)
        for (const auto& core : cores_of[n])
          if (t < core.size()) order.push_back(core[t]);
    } else {
      for (std::size_t k = 0; k < max_cores; ++k)
        for (std::size_t n : node_order)
          if (k < cores_of[n].size() && t < cores_of[n][k].size())
            order.push_back(cores_of[n][k][t]);
    }
  }

  // 4. Pollers, then one shard per node that has one.
  const unsigned pollers =
      request.pollers != 0 ? request.pollers : std::min(plan.usable_cores, max_default_pollers);
  std::vector<unsigned> node_of_cpu_index(static_cast<std::size_t>(all.back()) + 1, 0);
  for (const auto& p : topo.pus) node_of_cpu_index[static_cast<std::size_t>(p.os_index)] = p.node;
  std::vector<int> shard_of_node(nodes, -1);
  std::vector<unsigned> poller_node;
  for (unsigned i = 0; i < pollers; ++i) {
    const int cpu = order[i % order.size()];
    poller_node.push_back(node_of_cpu_index[static_cast<std::size_t>(cpu)]);
    plan.pollers.push_back({cpu, 0});
  }
  for (std::size_t n = 0; n < nodes; ++n) {
    if (std::find(poller_node.begin(), poller_node.end(), n) == poller_node.end()) continue;
    shard_of_node[n] = static_cast<int>(plan.shards.size());
    placement_plan::shard s;
    s.node_os = topo.node_os[n];
    std::vector<int> with_poller, without;
    // The node's CPUs in poller order (cores before hardware threads).
    for (int cpu : order) {
      if (node_of_cpu_index[static_cast<std::size_t>(cpu)] != n) continue;
      s.cpus.push_back(cpu);
      bool has = false;
      for (const auto& p : plan.pollers) has = has || p.cpu == cpu;
      (has ? with_poller : without).push_back(cpu);
    }
    s.notifier_cpus = without;
    s.notifier_cpus.insert(s.notifier_cpus.end(), with_poller.begin(), with_poller.end());
    std::sort(s.cpus.begin(), s.cpus.end());
    plan.shards.push_back(std::move(s));
  }
  for (unsigned i = 0; i < pollers; ++i) {
    const auto shard = static_cast<unsigned>(shard_of_node[poller_node[i]]);
    plan.pollers[i].shard = shard;
    ++plan.shards[shard].pollers;
  }
  plan.shard_of_cpu.assign(node_of_cpu_index.size(), -1);
  for (const auto& p : topo.pus)
    plan.shard_of_cpu[static_cast<std::size_t>(p.os_index)] =
        static_cast<std::int16_t>(shard_of_node[p.node]);
  return true;
}

bool placement_reach::can_pin(int cpu) const noexcept { return pinning && contains(cpus, cpu); }
bool placement_reach::can_bind(int node) const noexcept { return contains(nodes, node); }

std::string unreachable_warning(const placement_plan& plan, const placement_reach& reach) {
  std::vector<int> cpus, nodes;
  if (reach.pinning) {
    for (const auto& p : plan.pollers)
      if (!reach.can_pin(p.cpu)) cpus.push_back(p.cpu);
    for (const auto& s : plan.shards)
      for (int cpu : s.notifier_cpus)
        if (!reach.can_pin(cpu)) cpus.push_back(cpu);
  }
  for (const auto& s : plan.shards)
    if (!reach.can_bind(s.node_os)) nodes.push_back(s.node_os);
  if (cpus.empty() && nodes.empty()) return {};
  std::string w = "the placement planned on " + plan.source + " cannot be fully applied here:";
  if (!cpus.empty())
    w += " CPU " + format_cpu_list(cpus) +
         " cannot be pinned (threads planned there run unpinned; this process may use CPU " +
         format_cpu_list(reach.cpus) + ")";
  if (!cpus.empty() && !nodes.empty()) w += ";";
  if (!nodes.empty())
    w += " NUMA node " + format_cpu_list(nodes) +
         " is not online or not allowed here (shards planned there take unbound memory)";
  return w + ". The engine works the same, without that locality.";
}

std::string describe_plan(const placement_plan& plan, const placement_reach& reach,
                          unsigned max_threads) {
  auto plural = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  auto pin = [&](int cpu) -> std::string {
    if (!reach.pinning) return "CPU " + std::to_string(cpu) + " (not pinned: IOCM_NO_PINNING)";
    return "CPU " + std::to_string(cpu) + (reach.can_pin(cpu) ? "" : " (unpinned: not here)");
  };
  std::string out =
      "topology: " + plan.source + "\nusable CPUs: " + format_cpu_list(plan.usable) + " (" +
      plural(plan.usable_cores, "core") + ")\nplacement: " + placement_name(plan.policy) + ", " +
      plural(plan.pollers.size(), "poller") + ", " + plural(plan.shards.size(), "shard") + ", " +
      plural(max_threads, "notifier") + "\n";
  for (std::size_t s = 0; s < plan.shards.size(); ++s) {
    const auto& sh = plan.shards[s];
    const bool bound = reach.can_bind(sh.node_os);
    const std::string node = std::to_string(sh.node_os);
    out += "shard " + std::to_string(s) + ": NUMA node " + node + ", CPUs " +
           format_cpu_list(sh.cpus) + ", memory " +
           (bound ? "bound to node " + node : std::string("unbound (node not usable here)")) + "\n";
    for (std::size_t i = 0; i < plan.pollers.size(); ++i) {
      if (plan.pollers[i].shard != s) continue;
      // The kernel places the ring where the thread that creates it runs.
      const bool pinned = reach.can_pin(plan.pollers[i].cpu);
      out += "  poller " + std::to_string(i) + ": " + pin(plan.pollers[i].cpu) +
             (pinned && bound ? ", ring and inbox on node " + node
              : pinned        ? ", ring on node " + node + ", inbox unbound"
              : bound         ? ", inbox on node " + node + ", ring wherever the thread runs"
                              : ", ring and inbox unplaced") +
             "\n";
    }
    for (unsigned i = 0; i < max_threads; ++i)
      if (plan.notifier_shard(i) == s)
        out += "  notifier " + std::to_string(i) + ": " + pin(plan.notifier_cpu(i)) +
               ", drains shard " + std::to_string(s) + " first\n";
  }
  return out;
}

std::string describe_pinning(int cpu) {
  return cpu >= 0    ? "pinned to CPU " + std::to_string(cpu)
         : cpu == -1 ? std::string("not pinned")
                     : std::string("not started yet");
}

}  // namespace iocm::detail
