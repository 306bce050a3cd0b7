// The placement plan (core/src/placement.h) on machines described to hwloc:
// synthetic topologies and an XML export with Linux-style CPU numbering and
// a restricted allowed set. White-box: asserts the plan itself.
#include <doctest/doctest.h>
#include <hwloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "os.h"
#include "placement.h"

using namespace iocm::detail;

namespace {

constexpr const char* two_by_two = "synthetic:pack:2 numa:2 core:4 pu:2";

topology load(const std::string& spec) {
  topology t;
  std::string why;
  REQUIRE_MESSAGE(os::load_topology(spec.c_str(), t, why), why);
  return t;
}

placement_plan plan_for(const topology& t, placement_request r = {}) {
  placement_plan p;
  std::string why;
  REQUIRE_MESSAGE(make_plan(t, r, p, why), why);
  return p;
}

std::string plan_error(const topology& t, placement_request r) {
  placement_plan p;
  std::string why;
  CHECK_FALSE(make_plan(t, r, p, why));
  return why;
}

std::vector<int> poller_cpus(const placement_plan& p) {
  std::vector<int> v;
  for (const auto& q : p.pollers) v.push_back(q.cpu);
  return v;
}

int node_of(const topology& t, int cpu) {
  for (const auto& p : t.pus)
    if (p.os_index == cpu) return t.node_os[p.node];
  return -1;
}

unsigned core_of(const topology& t, int cpu) {
  for (const auto& p : t.pus)
    if (p.os_index == cpu) return p.core;
  return ~0u;
}

placement_reach everything() {
  placement_reach r;
  for (int c = 0; c < 64; ++c) r.cpus.push_back(c);
  r.nodes = {0, 1, 2, 3};
  return r;
}

}  // namespace

TEST_CASE("CPU lists: ranges, singles, blanks; malformed ones are named") {
  std::vector<int> cpus;
  std::string why;
  REQUIRE(parse_cpu_list("0-3,8", cpus, why));
  CHECK(cpus == std::vector<int>{0, 1, 2, 3, 8});
  REQUIRE(parse_cpu_list(" 5 , 1-2,2 ", cpus, why));
  CHECK(cpus == std::vector<int>{1, 2, 5});
  for (const char* bad : {"", "x", "1-", "-1", "3-1", "1,,2", "1.5", "0-3,x", "99999999"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_cpu_list(bad, cpus, why));
    CHECK_FALSE(why.empty());
  }
  CHECK(parse_cpu_list("0-3,x", cpus, why) == false);
  CHECK(why.find("\"x\"") != std::string::npos);
  CHECK(format_cpu_list({8, 0, 1, 2, 3, 10, 11}) == "0-3,8,10-11");
  CHECK(format_cpu_list({}) == "none");
}

TEST_CASE("synthetic 2 packages x 2 nodes: one poller per core, four node-local shards") {
  const topology t = load(two_by_two);
  CHECK_FALSE(t.this_machine);
  REQUIRE(t.pus.size() == 32);
  REQUIRE(t.node_os == std::vector<int>{0, 1, 2, 3});
  CHECK(t.node_package == std::vector<unsigned>{0, 0, 1, 1});
  const placement_plan p = plan_for(t);
  CHECK(p.usable_cores == 16);
  REQUIRE(p.pollers.size() == 16);
  REQUIRE(p.shards.size() == 4);
  std::set<unsigned> cores;
  for (const auto& q : p.pollers) {
    cores.insert(core_of(t, q.cpu));
    // A poller publishes into the shard of its own node.
    CHECK(p.shards[q.shard].node_os == node_of(t, q.cpu));
  }
  CHECK(cores.size() == 16);  // no two pollers share a core
  for (std::size_t s = 0; s < p.shards.size(); ++s) {
    CHECK(p.shards[s].node_os == static_cast<int>(s));
    CHECK(p.shards[s].pollers == 4);
    CHECK(p.shards[s].cpus.size() == 8);
    for (int cpu : p.shards[s].notifier_cpus) CHECK(node_of(t, cpu) == p.shards[s].node_os);
    // CPUs without a poller come first: the cores' second hardware threads.
    for (std::size_t i = 0; i < 4; ++i) CHECK(p.shards[s].notifier_cpus[i] % 2 == 1);
  }
  // Posts go to the shard of the caller's node.
  CHECK(p.shard_for_cpu(0) == 0);
  CHECK(p.shard_for_cpu(9) == 1);
  CHECK(p.shard_for_cpu(31) == 3);
  CHECK(p.shard_for_cpu(1000) == 0);
}

TEST_CASE("spread deals pollers over packages first; compact fills a node first") {
  const topology t = load(two_by_two);
  placement_request r;
  r.pollers = 4;
  r.policy = IOCM_PLACEMENT_SPREAD;
  const placement_plan spread = plan_for(t, r);
  CHECK(poller_cpus(spread) == std::vector<int>{0, 16, 8, 24});
  CHECK(spread.shards.size() == 4);
  r.policy = IOCM_PLACEMENT_COMPACT;
  const placement_plan compact = plan_for(t, r);
  CHECK(poller_cpus(compact) == std::vector<int>{0, 2, 4, 6});
  REQUIRE(compact.shards.size() == 1);
  CHECK(compact.shards[0].node_os == 0);
  // Only one shard: every notifier lives on node 0, CPUs without a poller first.
  CHECK(compact.shards[0].notifier_cpus == std::vector<int>{1, 3, 5, 7, 0, 2, 4, 6});
  r.pollers = 10;  // more than node 0's cores: on to node 1
  const placement_plan ten = plan_for(t, r);
  CHECK(poller_cpus(ten) == std::vector<int>{0, 2, 4, 6, 8, 10, 12, 14, 16, 18});
  CHECK(ten.shards.size() == 3);
}

TEST_CASE("thread limits are split across shards, to within one") {
  const topology t = load(two_by_two);
  const placement_plan p = plan_for(t);
  for (unsigned max : {1u, 4u, 10u, 33u}) {
    std::map<unsigned, unsigned> per_shard;
    for (unsigned i = 0; i < max; ++i) {
      ++per_shard[p.notifier_shard(i)];
      CHECK(node_of(t, p.notifier_cpu(i)) == p.shards[p.notifier_shard(i)].node_os);
    }
    unsigned lo = max, hi = 0;
    for (unsigned s = 0; s < 4; ++s) {
      lo = std::min(lo, per_shard[s]);
      hi = std::max(hi, per_shard[s]);
    }
    CAPTURE(max);
    CHECK(hi - lo <= 1);
  }
}

TEST_CASE("a CPU list restricts the plan; CPUs the machine lacks and empty sets are errors") {
  const topology t = load(two_by_two);
  placement_request r;
  std::string why;
  REQUIRE(parse_cpu_list("8-15", r.cpus, why));
  r.cpus_origin = "IOCM_CPUS=\"8-15\"";
  const placement_plan p = plan_for(t, r);
  CHECK(p.usable == r.cpus);
  CHECK(p.pollers.size() == 4);  // node 1's four cores
  REQUIRE(p.shards.size() == 1);
  CHECK(p.shards[0].node_os == 1);

  REQUIRE(parse_cpu_list("30-40", r.cpus, why));
  r.cpus_origin = "IOCM_CPUS=\"30-40\"";
  why = plan_error(t, r);
  CHECK(why.find("IOCM_CPUS=\"30-40\"") != std::string::npos);
  CHECK(why.find("32-40") != std::string::npos);  // names exactly the absent CPUs

  topology narrow = t;
  narrow.allowed = {0, 1};
  REQUIRE(parse_cpu_list("4-5", r.cpus, why));
  r.cpus_origin = "cpus=\"4-5\"";
  why = plan_error(narrow, r);
  CHECK(why.find("cpus=\"4-5\" leaves no CPU") != std::string::npos);
}

TEST_CASE("more pollers than CPUs wrap around the CPUs") {
  const topology t = load("synthetic:core:2 pu:1");
  placement_request r;
  r.pollers = 5;
  const placement_plan p = plan_for(t, r);
  CHECK(poller_cpus(p) == std::vector<int>{0, 1, 0, 1, 0});
  CHECK(p.shards.size() == 1);
  CHECK(p.shards[0].pollers == 5);
}

TEST_CASE("XML export: Linux numbering of hardware threads and a restricted allowed set") {
  const topology t = load(std::string("xml:") + IOCM_TEST_DATA_DIR "/two_socket_ht.xml");
  CHECK_FALSE(t.this_machine);
  REQUIRE(t.pus.size() == 16);
  // The XML allows every CPU but 0 and 12 (as a cgroup would).
  CHECK(format_cpu_list(t.allowed) == "1-11,13-15");
  const placement_plan p = plan_for(t);
  CHECK(p.usable_cores == 8);  // core {0,8} keeps 8, core {4,12} keeps 4
  CHECK(poller_cpus(p) == std::vector<int>{8, 4, 1, 5, 2, 6, 3, 7});
  REQUIRE(p.shards.size() == 2);
  CHECK(p.shards[0].notifier_cpus == std::vector<int>{9, 10, 11, 8, 1, 2, 3});
  CHECK(p.shards[1].notifier_cpus == std::vector<int>{13, 14, 15, 4, 5, 6, 7});
}

TEST_CASE("bad topology descriptions are refused with a reason") {
  topology t;
  std::string why;
  CHECK_FALSE(os::load_topology("synthetic:pack:x", t, why));
  CHECK(why.find("synthetic") != std::string::npos);
  CHECK_FALSE(os::load_topology("xml:/nonexistent/iocm.xml", t, why));
  CHECK_FALSE(why.empty());
  CHECK_FALSE(os::load_topology("lstopo", t, why));
  CHECK(why.find("neither") != std::string::npos);
}

TEST_CASE("descriptions above the limits are refused at once, naming the value and the limit") {
  const auto start = std::chrono::steady_clock::now();
  topology t;
  std::string why;
  // Without the limits, hwloc spends minutes and more building this one.
  CHECK_FALSE(os::load_topology("synthetic:pack:1000 numa:1000 core:1000 pu:1000", t, why));
  CHECK(why ==
        "describes 1000000000000 CPUs (the product of its arities), above the limit of 4096");
  CHECK_FALSE(
      os::load_topology("synthetic:pack:1000 numa:1000 core:1000 pu:1000 1000 1000 1000", t, why));
  CHECK(why.find("describes more than 2^64 CPUs") != std::string::npos);
  // One wide level is slow too: hwloc's time grows with its square.
  CHECK_FALSE(os::load_topology("synthetic:core:2048 pu:1", t, why));
  CHECK(why == "puts 2048 objects under one object (\"core:2048\"), above the limit of 1024");
  CHECK_FALSE(
      os::load_topology("synthetic:(memory=1GB) pack:0x10 [numa] core:0x10 pu:0x11", t, why));
  CHECK(why.find("describes 4352 CPUs") != std::string::npos);
  // Within the arities but past the nodes: counted once loaded.
  CHECK_FALSE(os::load_topology("synthetic:pack:2 numa:513 pu:1", t, why));
  CHECK(why == "describes 1026 NUMA nodes, above the limit of 1024");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  // At the limits: accepted.
  CHECK(load("synthetic:pack:4 [numa] core:1024 pu:1").pus.size() == 4096);
  CHECK(load("synthetic:(memory=1GB) pack:2 [numa(memory=2GB)] core:4 pu:2").pus.size() == 16);
}

TEST_CASE("hwloc's own HWLOC_SYNTHETIC and HWLOC_XMLFILE are held to the same limits") {
  // hwloc reads them in place of discovering this machine.
  topology t;
  std::string why;
  ::setenv("HWLOC_SYNTHETIC", "pack:1000 numa:1000 core:1000 pu:1000", 1);
  CHECK_FALSE(os::load_topology("", t, why));
  CHECK(why ==
        "comes from HWLOC_SYNTHETIC=\"pack:1000 numa:1000 core:1000 pu:1000\", which describes "
        "1000000000000 CPUs (the product of its arities), above the limit of 4096");
  ::setenv("HWLOC_SYNTHETIC", "pack:2 numa:513 pu:1", 1);
  CHECK_FALSE(os::load_topology("", t, why));
  CHECK(why == "describes 1026 NUMA nodes, above the limit of 1024");
  ::unsetenv("HWLOC_SYNTHETIC");
  ::setenv("HWLOC_XMLFILE", "/dev/zero", 1);
  CHECK_FALSE(os::load_topology("", t, why));
  CHECK(why ==
        "comes from HWLOC_XMLFILE=\"/dev/zero\", which names an XML description that is "
        "not a regular file");
  ::unsetenv("HWLOC_XMLFILE");
  CHECK(load("").this_machine);
}

TEST_CASE("XML descriptions above the limits are refused") {
  char dir[] = "/tmp/iocm-placement-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string big = std::string(dir) + "/big.xml", many = std::string(dir) + "/many.xml";
  topology t;
  std::string why;
  // A file above 16 MiB is not read at all.
  FILE* f = std::fopen(big.c_str(), "w");
  REQUIRE(f != nullptr);
  REQUIRE(::ftruncate(::fileno(f), (16 << 20) + 1) == 0);
  std::fclose(f);
  CHECK_FALSE(os::load_topology(("xml:" + big).c_str(), t, why));
  CHECK(why == "names an XML file of 16777217 bytes, above the limit of 16777216 (16 MiB)");
  CHECK_FALSE(os::load_topology("xml:/dev/zero", t, why));
  CHECK(why == "names an XML description that is not a regular file");
  // An export of a machine with 4224 CPUs: counted once loaded.
  hwloc_topology_t h = nullptr;
  REQUIRE(hwloc_topology_init(&h) == 0);
  REQUIRE(hwloc_topology_set_synthetic(h, "pack:2 numa:2 core:32 pu:33") == 0);
  REQUIRE(hwloc_topology_load(h) == 0);
  REQUIRE(hwloc_topology_export_xml(h, many.c_str(), 0) == 0);
  hwloc_topology_destroy(h);
  CHECK_FALSE(os::load_topology(("xml:" + many).c_str(), t, why));
  CHECK(why == "describes 4224 CPUs, above the limit of 4096");
  std::remove(big.c_str());
  std::remove(many.c_str());
  ::rmdir(dir);
}

TEST_CASE("what cannot be applied makes one warning naming the CPUs and nodes") {
  const topology t = load(two_by_two);
  const placement_plan p = plan_for(t);
  CHECK(unreachable_warning(p, everything()).empty());
  placement_reach small;
  small.cpus = {0, 1};
  small.nodes = {0};
  const std::string w = unreachable_warning(p, small);
  CHECK(w.find("CPU 2-31 cannot be pinned") != std::string::npos);
  CHECK(w.find("NUMA node 1-3 is not online or not allowed here") != std::string::npos);
  small.pinning = false;  // IOCM_NO_PINNING: pinning is not asked for
  CHECK(unreachable_warning(p, small).find("pinned") == std::string::npos);
}

TEST_CASE("this machine: the plan uses exactly the CPUs this process may run on") {
  const topology t = load("");
  CHECK(t.this_machine);
  int cpus[1024];
  const unsigned n = os::usable_cpus(cpus, 1024);
  std::vector<int> mine(cpus, cpus + std::min(n, 1024u));
  std::sort(mine.begin(), mine.end());
  CHECK(t.allowed == mine);
  const placement_plan p = plan_for(t);
  CHECK(p.usable == mine);
  placement_reach here;
  here.cpus = mine;
  here.nodes = os::bindable_nodes();
  CHECK(unreachable_warning(p, here).empty());
  const std::string table = describe_plan(p, here, 3);
  CHECK(table.find("topology: this machine") != std::string::npos);
  CHECK(table.find("notifier 2:") != std::string::npos);
}

TEST_CASE("node memory lands on its node") {
  const std::vector<int> nodes = os::bindable_nodes();
  REQUIRE_FALSE(nodes.empty());
  auto mem = os::node_memory(nodes.back());
  auto* p = static_cast<char*>(mem->allocate(1 << 20, 64));
  for (int i = 0; i < (1 << 20); i += 4096) p[i] = 1;  // first touch
  CHECK(os::node_of_address(p) == nodes.back());
  CHECK(os::node_of_address(p + (1 << 19)) == nodes.back());
  mem->deallocate(p, 1 << 20, 64);
}
