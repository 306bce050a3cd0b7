// The completion ports' table (port_table.h).
#include "port_table.h"

#include "handle_table.h"

namespace iocm::detail {

using namespace hosting;

port_table::port_table(std::uint32_t max_ports, unsigned counters_per_port, unsigned deliverers)
    : max_ports_(max_ports),
      counters_per_port_(counters_per_port),
      ports_(new port_entry[max_ports]),
      admitted_(new admitted_counter[std::size_t{max_ports} * counters_per_port]),
      deliverers_(deliverers),
      rows_(new std::atomic<delivered_row*>[deliverers]) {
  for (unsigned i = 0; i < deliverers; ++i) rows_[i].store(nullptr, std::memory_order_relaxed);
}

port_table::~port_table() {
  for (unsigned i = 0; i < deliverers_; ++i) delete rows_[i].load(std::memory_order_relaxed);
}

void port_table::add_admitted(std::uint64_t (&by_kind)[op_kind_count]) const noexcept {
  for (std::size_t i = 0; i < std::size_t{max_ports_} * counters_per_port_; ++i)
    for (std::size_t k = 0; k < admitted_counter::kinds; ++k)
      by_kind[k] +=
          static_cast<std::uint64_t>(admitted_[i].by_kind[k].load(std::memory_order_relaxed));
}

port_table::delivered_row::delivered_row(std::uint32_t max_ports)
    : counts_(new std::atomic<std::int64_t>[pad + std::size_t{max_ports} * op_kind_count + pad]()),
      max_ports_(max_ports) {}

std::int64_t port_table::delivered_row::read(std::uint16_t slot) const noexcept {
  std::int64_t n = 0;
  for (std::size_t k = 0; k < op_kind_count; ++k)
    n += counts_[index(slot, static_cast<op_kind>(k))].load(std::memory_order_acquire);
  return n;
}

std::uint64_t port_table::delivered_row::add_totals(
    std::uint64_t (&by_kind)[op_kind_count]) const noexcept {
  std::uint64_t all = 0;
  for (std::uint32_t slot = 0; slot < max_ports_; ++slot)
    for (std::size_t k = 0; k < op_kind_count; ++k) {
      const auto n = static_cast<std::uint64_t>(
          counts_[index(static_cast<std::uint16_t>(slot), static_cast<op_kind>(k))].load(
              std::memory_order_relaxed));
      by_kind[k] += n;
      all += n;
    }
  return all;
}

port_table::delivered_row& port_table::deliverer(unsigned id) {
  if (delivered_row* row = rows_[id].load(std::memory_order_acquire)) return *row;
  auto row = std::make_unique<delivered_row>(max_ports_);
  delivered_row* made = row.release();
  rows_[id].store(made, std::memory_order_release);  // pairs with pending_total's acquire
  return *made;
}

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
  // Delivered first, then admitted. Every delivered operation was admitted
  // before (its admission happens before the record reaches a deliverer),
  // so the admitted sum read later covers every delivery counted here, and
  // an admission taken back can only make it larger for a moment: the
  // difference reads 0 only once every admitted operation was delivered.
  // Acquire pairs with delivered_row::add's release: those OnComplete calls
  // have returned. A row made after we looked is one whose deliveries we
  // miss: the difference reads higher, and Close waits longer.
  std::int64_t delivered = 0;
  for (unsigned i = 0; i < deliverers_; ++i)
    if (const delivered_row* row = rows_[i].load(std::memory_order_acquire))
      delivered += row->read(slot);
  std::int64_t admitted_sum = 0;
  for (unsigned s = 0; s < counters_per_port_; ++s)
    for (const auto& n : admitted_[std::size_t{slot} * counters_per_port_ + s].by_kind)
      admitted_sum += n.load(std::memory_order_acquire);
  return admitted_sum - delivered;
}

}  // namespace iocm::detail
