// The completion ports' table (port_table.h).
#include "port_table.h"

#include "handle_table.h"

namespace iocm::detail {

using namespace hosting;

port_table::port_table(std::uint32_t max_ports, unsigned counters_per_port)
    : max_ports_(max_ports),
      counters_per_port_(counters_per_port),
      ports_(new port_entry[max_ports]),
      pending_(new pending_counter[std::size_t{max_ports} * counters_per_port]) {}

bool port_table::decode(HANDLE port, std::uint16_t& slot, std::uint64_t& state) const noexcept {
  const auto v = reinterpret_cast<std::uintptr_t>(port);
  const std::uintptr_t s = v & 0xFFFF;
  if (s == 0 || s > max_ports_) return false;
  slot = static_cast<std::uint16_t>(s - 1);
  state = ports_[slot].state.load(std::memory_order_acquire);
  return (state >> 2) == (v >> 16);
}

HANDLE port_table::open_locked() noexcept {
  for (std::uint32_t slot = 0; slot < max_ports_; ++slot) {
    const std::uint64_t st = ports_[slot].state.load(std::memory_order_relaxed);
    if ((st & 3) != free_state) continue;
    std::uint64_t gen = ((st >> 2) + 1) & binding::generation_mask;
    if (gen == 0) gen = 1;
    ports_[slot].state.store(gen << 2 | open_state, std::memory_order_release);
    return handle_of(static_cast<std::uint16_t>(slot), gen);
  }
  return nullptr;
}

HRESULT port_table::begin_close_locked(HANDLE port, std::uint16_t& slot,
                                       std::uint64_t& state) noexcept {
  if (!decode_open(port, slot, state)) return E_INVALIDARG;
  // (E2) pairs with (E1) in admit: from here no new operation is accepted
  // on this port, and every accepted one is counted.
  ports_[slot].state.store((state & ~std::uint64_t{3}) | closing_state, std::memory_order_seq_cst);
  return S_OK;
}

std::int64_t port_table::pending_total(std::uint16_t slot) const noexcept {
  std::int64_t sum = 0;
  // Acquire pairs with delivered()'s release decrements: once the sum is
  // seen at zero, every OnComplete for the port has returned.
  for (unsigned s = 0; s < counters_per_port_; ++s)
    sum +=
        pending_[std::size_t{slot} * counters_per_port_ + s].value.load(std::memory_order_acquire);
  return sum;
}

}  // namespace iocm::detail
