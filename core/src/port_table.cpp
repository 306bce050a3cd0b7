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

void port_table::admitted_totals(std::uint64_t& all, std::uint64_t& posts) const noexcept {
  all = posts = 0;
  for (std::size_t slot = 0; slot < max_ports_; ++slot)
    for (unsigned c = 0; c < counters_per_port_; ++c) {
      const auto n = static_cast<std::uint64_t>(
          admitted_[slot * counters_per_port_ + c].value.load(std::memory_order_relaxed));
      all += n;
      if (c + 1 == counters_per_port_) posts += n;
    }
}

port_table::delivered_row& port_table::deliverer(unsigned id) {
  if (delivered_row* row = rows_[id].load(std::memory_order_acquire)) return *row;
  auto row = std::make_unique<delivered_row>();
  row->lines_.reset(new delivered_row::line[(max_ports_ + delivered_row::per_line - 1) /
                                            delivered_row::per_line]);
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
    admitted_sum +=
        admitted_[std::size_t{slot} * counters_per_port_ + s].value.load(std::memory_order_acquire);
  return admitted_sum - delivered;
}

}  // namespace iocm::detail
