// Delivery of one completion record to the runtime (delivery.h).
#include "delivery.h"

namespace iocm::detail {

using namespace hosting;

delivery::~delivery() {
  if (auto* clr = clr_.load(std::memory_order_acquire)) table_of(clr).Release(clr);
}

HRESULT delivery::set_clr(ICLRIoCompletionManager* clr) noexcept {
  if (clr == nullptr) return E_POINTER;
  ICLRIoCompletionManager* expected = nullptr;
  table_of(clr).AddRef(clr);
  // acq_rel: the runtime's object is fully built before notifiers call it.
  if (!clr_.compare_exchange_strong(expected, clr, std::memory_order_acq_rel)) {
    table_of(clr).Release(clr);
    return expected == clr ? S_OK : HOST_E_INVALIDOPERATION;  // set once
  }
  return S_OK;
}

void delivery::settle_current() noexcept {
  tl_row_->add(tl_current_.cell);
  tl_current_.settled = true;
}

}  // namespace iocm::detail
