// An engine's configuration made whole (engine_config.h): the config's
// fields checked, defaults and the environment applied, the backend chosen,
// the topology loaded and the placement planned.
#include "engine_config.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "backend.h"
#include "notifiers.h"
#include "os.h"

namespace iocm::detail {

using namespace hosting;

namespace {

constexpr unsigned max_pollers = 256;
constexpr unsigned max_ports_limit = 1024;
constexpr std::uint32_t max_queue_capacity = 1u << 24;

bool pow2_in(std::uint32_t v, std::uint32_t lo, std::uint32_t hi) noexcept {
  return v >= lo && v <= hi && std::has_single_bit(v);
}

std::string quoted(const char* s) { return std::string("\"") + s + "\""; }

bool parse_count(const char* s, unsigned lo, unsigned hi, std::uint32_t& out) {
  const std::string_view v(s);
  unsigned n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size() || n < lo || n > hi) return false;
  out = n;
  return true;
}

using choice = std::pair<std::string_view, std::uint32_t>;

/// Sets `field` from environment variable `name` when it is set: its value
/// must be one of the names in `choices`. False, with *why naming the
/// value, when it is not.
bool choose_from_env(const char* name, std::span<const choice> choices, std::uint32_t& field,
                     std::string& why) {
  const char* env = std::getenv(name);
  if (env == nullptr) return true;
  std::string names;
  for (const auto& [text, value] : choices) {
    if (text == env) {
      field = value;
      return true;
    }
    names += (names.empty() ? "\"" : ", \"") + std::string(text) + "\"";
  }
  why = std::string(name) + "=" + quoted(env) + " is not one of " + names;
  return false;
}

/// NAME=1 in the environment adds `flag` to `flags` where `allowed`; =0 or
/// unset leaves them as the config says. False, with *why, for another value.
bool switch_from_env(const char* name, std::uint32_t flag, bool allowed, std::uint32_t& flags,
                     std::string& why) {
  static constexpr choice on_off[] = {{"0", 0}, {"1", 1}};
  std::uint32_t on = 0;
  if (!choose_from_env(name, on_off, on, why)) return false;
  if (on != 0 && allowed) flags |= flag;
  return true;
}

/// IOCM_BACKEND, when set: "auto" or a backend's name.
bool choose_backend_from_env(std::uint32_t& backend, std::string& why) {
  std::vector<choice> choices{{"auto", IOCM_BACKEND_AUTO}};
  for (const poller_backend& b : poller_backends()) choices.emplace_back(b.name, b.id);
  return choose_from_env("IOCM_BACKEND", choices, backend, why);
}

}  // namespace

HRESULT prepare_setup(const iocm_config* in, engine_setup& out, std::string& why) noexcept try {
  iocm_config& c = out.config;
  iocm_config_init(&c);
  if (in != nullptr) {
    if (in->struct_size == IOCM_CONFIG_SIZE_V1) {
      std::memcpy(&c, in, IOCM_CONFIG_SIZE_V1);  // the fields after it keep their defaults
      c.struct_size = sizeof(iocm_config);
    } else if (in->struct_size == sizeof(iocm_config)) {
      c = *in;
    } else {
      why = "struct_size " + std::to_string(in->struct_size) +
            " is not a known iocm_config layout (fill the config with iocm_config_init)";
      return E_INVALIDARG;
    }
  }
  auto bad = [&](std::string message) {
    why = std::move(message);
    return E_INVALIDARG;
  };
  if (!pow2_in(c.queue_capacity, 64, max_queue_capacity))
    return bad("queue_capacity " + std::to_string(c.queue_capacity) +
               " is not a power of two in 64..16777216");
  if (!pow2_in(c.inbox_capacity, 64, max_queue_capacity))
    return bad("inbox_capacity " + std::to_string(c.inbox_capacity) +
               " is not a power of two in 64..16777216");
  if (c.max_ports == 0 || c.max_ports > max_ports_limit)
    return bad("max_ports " + std::to_string(c.max_ports) + " is not in 1..1024");
  if ((c.flags & ~std::uint32_t{IOCM_NO_PINNING | IOCM_PUMPED | IOCM_HANDOFF | IOCM_FIXED_FILES |
                                IOCM_INLINE_ALL}) != 0)
    return bad("flags " + std::to_string(c.flags) + " has bits iocm does not know");
  if ((c.flags & IOCM_HANDOFF) != 0 && (c.flags & IOCM_INLINE_ALL) != 0)
    return bad(
        "flags: IOCM_HANDOFF (never deliver on a poller) and IOCM_INLINE_ALL (deliver "
        "everything there) contradict each other");
  const bool pumped = (c.flags & IOCM_PUMPED) != 0;
  if (pumped) {
    // One poller, run by whichever thread pumps: a ring tied to the thread
    // that made it (SINGLE_ISSUER) or running its work only when that
    // thread enters the kernel (COOP_TASKRUN) would not do.
    if (c.pollers > 1)
      return bad("pollers " + std::to_string(c.pollers) + " with IOCM_PUMPED (which runs one)");
    c.pollers = 1;
  }
  // Each backend's own options (io_uring: the ring's size and setup).
  for (const poller_backend& b : poller_backends())
    if (!b.check_options(c, why)) return E_INVALIDARG;
  if (c.backend != IOCM_BACKEND_AUTO && find_backend(c.backend) == nullptr)
    return bad("backend " + std::to_string(c.backend) + " is not an iocm_backend value");
  if (c.backend == IOCM_BACKEND_AUTO && !choose_backend_from_env(c.backend, why))
    return E_INVALIDARG;
  if (c.backend == IOCM_BACKEND_AUTO) {
    // The first that can run here; why the ones before it cannot is said
    // once (IOCM_LOG_INFO).
    std::string why_not;
    for (const poller_backend& b : poller_backends()) {
      std::string why_this;
      if (b.available(why_this)) {
        c.backend = b.id;
        break;
      }
      if (why_not.empty()) why_not = why_this;
    }
    if (c.backend == IOCM_BACKEND_AUTO) return bad("no poller backend can run here: " + why_not);
    if (!why_not.empty())
      out.notice =
          std::string("using the ") + find_backend(c.backend)->name + " backend: " + why_not;
  }

  // Switches the environment may turn on: registered files, and delivering
  // everything inline for an engine that delivers on its pollers at all.
  if (!switch_from_env("IOCM_FIXED_FILES", IOCM_FIXED_FILES, true, c.flags, why) ||
      !switch_from_env("IOCM_INLINE_ALL", IOCM_INLINE_ALL,
                       (c.flags & (IOCM_HANDOFF | IOCM_PUMPED)) == 0, c.flags, why))
    return E_INVALIDARG;

  // Placement: the config's fields first, then the environment.
  placement_request request;
  const char* cpus = c.cpus;
  request.cpus_origin = cpus != nullptr ? "cpus=" + quoted(cpus) : "";
  if (cpus == nullptr && (cpus = std::getenv("IOCM_CPUS")) != nullptr)
    request.cpus_origin = "IOCM_CPUS=" + quoted(cpus);
  if (cpus != nullptr) {
    std::string what;
    if (!parse_cpu_list(cpus, request.cpus, what)) return bad(request.cpus_origin + " " + what);
  }
  if (c.pollers > max_pollers)
    return bad("pollers " + std::to_string(c.pollers) + " is above the limit of 256");
  if (const char* env = std::getenv("IOCM_POLLERS"); c.pollers == 0 && env != nullptr) {
    if (!parse_count(env, 1, max_pollers, c.pollers))
      return bad("IOCM_POLLERS=" + quoted(env) + " is not a poller count in 1..256");
  }
  request.pollers = c.pollers;
  if (c.placement > IOCM_PLACEMENT_SPREAD)
    return bad("placement " + std::to_string(c.placement) + " is not an iocm_placement value");
  static constexpr choice placements[] = {{"compact", IOCM_PLACEMENT_COMPACT},
                                          {"spread", IOCM_PLACEMENT_SPREAD}};
  if (c.placement == IOCM_PLACEMENT_DEFAULT &&
      !choose_from_env("IOCM_PLACEMENT", placements, c.placement, why))
    return E_INVALIDARG;
  if (c.placement == IOCM_PLACEMENT_DEFAULT) c.placement = IOCM_PLACEMENT_SPREAD;
  request.policy = c.placement;

  const char* spec = c.topology;
  std::string spec_origin = spec != nullptr ? "topology=" + quoted(spec) : "";
  if (spec == nullptr && (spec = std::getenv("IOCM_TOPOLOGY")) != nullptr)
    spec_origin = "IOCM_TOPOLOGY=" + quoted(spec);
  topology topo;
  if (std::string what; !os::load_topology(spec, topo, what))
    return bad(spec_origin.empty() ? "this machine's topology " + what : spec_origin + " " + what);
  if (std::string what; !make_plan(topo, request, out.plan, what)) return bad(what);

  c.pollers = static_cast<std::uint32_t>(out.plan.pollers.size());
  const auto usable = static_cast<unsigned>(out.plan.usable.size());
  if (c.min_threads == 0) c.min_threads = 1;
  if (c.max_threads == 0)
    c.max_threads = std::max(c.min_threads, std::min(2 * usable, notifier_pool::max_notifiers));
  if (c.max_threads > notifier_pool::max_notifiers)
    return bad("max_threads " + std::to_string(c.max_threads) + " is above the limit of 1024");
  if (c.min_threads > c.max_threads)
    return bad("min_threads " + std::to_string(c.min_threads) + " is above max_threads " +
               std::to_string(c.max_threads));

  // What this machine lets us apply.
  int real[1024];
  const unsigned n = std::min(1024u, os::usable_cpus(real, 1024));
  out.reach.cpus.assign(real, real + n);
  std::sort(out.reach.cpus.begin(), out.reach.cpus.end());
  out.reach.nodes = os::bindable_nodes();
  out.reach.pinning = (c.flags & IOCM_NO_PINNING) == 0;
  // The strings are read during creation only.
  c.cpus = nullptr;
  c.topology = nullptr;
  return S_OK;
} catch (const std::bad_alloc&) {
  return E_OUTOFMEMORY;
}

/// Through the config's log callback, or one line on stderr.
void log_sink::say(std::uint32_t level, const char* text) const noexcept {
  if (callback != nullptr) {
    callback(context, level, text);
    return;
  }
  std::fprintf(stderr, "iocm: %s: %s\n",
               level == IOCM_LOG_ERROR     ? "error"
               : level == IOCM_LOG_WARNING ? "warning"
                                           : "info",
               text);
}

}  // namespace iocm::detail
