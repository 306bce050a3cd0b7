// The C++ face (iocm/engine.h) over the engine core.
#include <string>

#include "engine_core.h"
#include "iocm/engine.h"

namespace iocm {

using namespace hosting;
using detail::engine_core;
using detail::op_kind;

namespace {

HANDLE as_handle(int fd) noexcept {
  return reinterpret_cast<HANDLE>(static_cast<std::intptr_t>(fd));
}

/// Accepted is the empty error_code; anything else is the refusal.
std::error_code result(HRESULT hr) noexcept {
  return hr == IOCM_E_IO_PENDING || hr == S_OK ? std::error_code{} : make_hresult_error(hr);
}

class hresult_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "iocm.hresult"; }
  std::string message(int code) const override {
    const auto hr = static_cast<HRESULT>(code);
    switch (hr) {
      case S_OK:
        return "success";
      case E_POINTER:
        return "a required pointer is null (E_POINTER)";
      case E_INVALIDARG:
        return "an argument is invalid (E_INVALIDARG)";
      case E_OUTOFMEMORY:
        return "out of memory or threads (E_OUTOFMEMORY)";
      case HOST_E_CLRNOTAVAILABLE:
        return "no completion handler is set (HOST_E_CLRNOTAVAILABLE)";
      case HOST_E_INVALIDOPERATION:
        return "invalid operation (HOST_E_INVALIDOPERATION)";
      default:
        break;
    }
    if ((static_cast<std::uint32_t>(hr) & 0xFFFF0000u) == 0x80070000u) {
      const DWORD e = static_cast<std::uint32_t>(hr) & 0xFFFFu;
      switch (e) {
        case ERROR_INVALID_HANDLE:
          return "the handle is not bound or not open (ERROR_INVALID_HANDLE)";
        case ERROR_INVALID_PARAMETER:
          return "invalid parameter (ERROR_INVALID_PARAMETER)";
        case ERROR_BUSY:
          return "busy: the OVERLAPPED is still in flight, or another thread is pumping "
                 "(ERROR_BUSY)";
        case ERROR_INVALID_FUNCTION:
          return "not for this engine: pump() needs IOCM_PUMPED (ERROR_INVALID_FUNCTION)";
        case ERROR_NOT_FOUND:
          return "nothing to cancel (ERROR_NOT_FOUND)";
        case ERROR_NOT_SUPPORTED:
          return "io_uring is unavailable or refused (ERROR_NOT_SUPPORTED)";
        case ERROR_NO_SYSTEM_RESOURCES:
          return "the engine is saturated (ERROR_NO_SYSTEM_RESOURCES)";
        default:
          return "Win32 error " + std::to_string(e);
      }
    }
    return "HRESULT " + std::to_string(static_cast<std::uint32_t>(hr));
  }
};

}  // namespace

const std::error_category& hresult_category() noexcept {
  static const hresult_category_impl category;
  return category;
}

HRESULT prepare_overlapped(OVERLAPPED* ov) noexcept {
  return engine_core::initialize_overlapped(ov);
}

/// Forwards the runtime-side callback to the handler; owned by impl, so
/// reference counting is a formality. Hidden: not part of what libiocm.so
/// exports, though its name matches iocm::engine::* (cmake/iocm.map).
struct [[gnu::visibility("hidden")]] engine::impl final : ICLRIoCompletionManager {
  explicit impl(completion_handler & h) : handler(h) {}
  HRESULT QueryInterface(const IID& riid, void** ppv) override {
    if (ppv == nullptr) return E_POINTER;
    if (riid == IID_IUnknown || riid == IID_ICLRIoCompletionManager) {
      *ppv = static_cast<ICLRIoCompletionManager*>(this);
      return S_OK;
    }
    *ppv = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 1; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    handler.on_complete(error, bytes, static_cast<OVERLAPPED*>(ov));
    return S_OK;
  }
  ~impl() = default;

  completion_handler& handler;
  std::unique_ptr<engine_core> core;
};

engine::engine(completion_handler& handler, const engine_config& config)
    : impl_(new impl(handler)) {
  std::unique_ptr<impl> guard(impl_);
  HRESULT hr = S_OK;
  std::string why;
  impl_->core = engine_core::build(&config, &hr, &why);
  if (!impl_->core)
    throw std::system_error(make_hresult_error(hr),
                            why.empty() ? std::string("iocm::engine") : "iocm::engine: " + why);
  impl_->core->set_clr(impl_);
  guard.release();
}

engine::~engine() {
  impl* p = impl_;
  detail::destroy_off_notifier(*p->core, [p] { delete p; });
}

port_handle engine::create_port() {
  HANDLE port = nullptr;
  if (const HRESULT hr = impl_->core->create_port(&port); FAILED(hr))
    throw std::system_error(make_hresult_error(hr), "iocm::engine::create_port");
  return port;
}
std::error_code engine::close_port(port_handle port) noexcept {
  return result(impl_->core->close_port(port));
}
std::error_code engine::bind(int fd, port_handle port) noexcept {
  return result(impl_->core->bind(port, as_handle(fd)));
}
std::error_code engine::unbind(int fd) noexcept {
  return result(impl_->core->unbind(as_handle(fd)));
}

std::error_code engine::read(int fd, void* buffer, std::uint32_t length, overlapped& o) noexcept {
  return result(impl_->core->submit(op_kind::read, as_handle(fd), buffer, length,
                                    detail::file_offset(&o.ov), &o.ov));
}
std::error_code engine::write(int fd, const void* buffer, std::uint32_t length,
                              overlapped& o) noexcept {
  return result(impl_->core->submit(op_kind::write, as_handle(fd), const_cast<void*>(buffer),
                                    length, detail::file_offset(&o.ov), &o.ov));
}
std::error_code engine::recv(int fd, void* buffer, std::uint32_t length, overlapped& o) noexcept {
  return result(impl_->core->submit(op_kind::recv, as_handle(fd), buffer, length, 0, &o.ov));
}
std::error_code engine::send(int fd, const void* buffer, std::uint32_t length,
                             overlapped& o) noexcept {
  return result(impl_->core->submit(op_kind::send, as_handle(fd), const_cast<void*>(buffer), length,
                                    0, &o.ov));
}
std::error_code engine::accept(int fd, int* accepted, overlapped& o) noexcept {
  if (accepted == nullptr) return make_hresult_error(E_POINTER);
  return result(impl_->core->submit(op_kind::accept, as_handle(fd), accepted, 0,
                                    detail::accept_into_int, &o.ov));
}
std::error_code engine::connect(int fd, const void* address, std::uint32_t length,
                                overlapped& o) noexcept {
  if (address == nullptr) return make_hresult_error(E_POINTER);
  if (length == 0 || length > 128) return make_hresult_error(E_INVALIDARG);
  return result(impl_->core->submit(op_kind::connect, as_handle(fd), const_cast<void*>(address), 0,
                                    length, &o.ov));
}
std::error_code engine::post(port_handle port, std::uint32_t error, std::uint32_t bytes,
                             overlapped& o) noexcept {
  return result(impl_->core->post(port, error, bytes, &o.ov));
}
std::error_code engine::cancel(int fd, overlapped* o) noexcept {
  return result(impl_->core->cancel(as_handle(fd), o != nullptr ? &o->ov : nullptr));
}
std::error_code engine::nop(int fd, overlapped& o) noexcept {
  return result(impl_->core->submit(op_kind::nop, as_handle(fd), nullptr, 0, 0, &o.ov));
}

std::error_code engine::pump(std::uint32_t timeout_ms, std::uint32_t* delivered) noexcept {
  DWORD n = 0;
  const HRESULT hr = impl_->core->pump(timeout_ms, &n);
  if (delivered != nullptr) *delivered = n;
  return result(hr);
}

std::error_code engine::set_max_threads(std::uint32_t n) noexcept {
  return result(impl_->core->set_max_threads(n));
}
std::error_code engine::set_min_threads(std::uint32_t n) noexcept {
  return result(impl_->core->set_min_threads(n));
}
std::uint32_t engine::max_threads() const noexcept {
  DWORD n = 0;
  impl_->core->get_max_threads(&n);
  return n;
}
std::uint32_t engine::min_threads() const noexcept {
  DWORD n = 0;
  impl_->core->get_min_threads(&n);
  return n;
}
std::uint32_t engine::available_threads() const noexcept {
  DWORD n = 0;
  impl_->core->get_available_threads(&n);
  return n;
}
engine_stats engine::stats() const noexcept {
  const detail::engine_counters c = impl_->core->counters();
  return {c.pollers, c.ring_setup, c.notifiers, c.busy, c.parked, c.wakeups, c.shards, c.backend};
}
iocm_metrics engine::metrics() const noexcept {
  iocm_metrics m{};
  impl_->core->metrics(m);
  m.struct_size = sizeof m;
  return m;
}
std::string engine::placement() const { return impl_->core->describe(); }

}  // namespace iocm
