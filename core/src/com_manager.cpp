// The COM-shaped face: IHostIoCompletionManager, IIocmHostIo and (for a
// pumped engine) IIocmPump over the engine core, and the C entry points.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "backend.h"
#include "engine_core.h"
#include "iocm/host_io.h"
#include "iocm/hosting.h"

namespace iocm::detail {

using namespace hosting;

namespace {

class com_manager final : public IHostIoCompletionManager,
                          public IIocmHostIo2,
                          public IIocmPump,
                          public IIocmMetrics {
 public:
  explicit com_manager(std::unique_ptr<engine_core> core) noexcept : core_(std::move(core)) {}

  // IUnknown (shared by the interfaces through the final overriders).
  HRESULT QueryInterface(const IID& riid, void** ppv) override {
    if (ppv == nullptr) return E_POINTER;
    if (riid == IID_IUnknown || riid == IID_IHostIoCompletionManager)
      *ppv = static_cast<IHostIoCompletionManager*>(this);
    else if (riid == IID_IIocmHostIo)
      *ppv = static_cast<IIocmHostIo*>(static_cast<IIocmHostIo2*>(this));
    else if (riid == IID_IIocmHostIo2)
      *ppv = static_cast<IIocmHostIo2*>(this);
    else if (riid == IID_IIocmPump && core_->pumped())
      *ppv = static_cast<IIocmPump*>(this);
    else if (riid == IID_IIocmMetrics)
      *ppv = static_cast<IIocmMetrics*>(this);
    else {
      *ppv = nullptr;
      return E_NOINTERFACE;
    }
    AddRef();
    return S_OK;
  }
  ULONG AddRef() override { return refs_.fetch_add(1, std::memory_order_relaxed) + 1; }
  ULONG Release() override {
    // acq_rel: every use by other owners happens-before the destruction.
    const ULONG left = refs_.fetch_sub(1, std::memory_order_acq_rel) - 1;
    if (left == 0) destroy(this);
    return left;
  }

  // IHostIoCompletionManager
  HRESULT CreateIoCompletionPort(HANDLE* phPort) override { return core_->create_port(phPort); }
  HRESULT CloseIoCompletionPort(HANDLE hPort) override { return core_->close_port(hPort); }
  HRESULT SetMaxThreads(DWORD n) override { return core_->set_max_threads(n); }
  HRESULT GetMaxThreads(DWORD* n) override { return core_->get_max_threads(n); }
  HRESULT GetAvailableThreads(DWORD* n) override { return core_->get_available_threads(n); }
  HRESULT GetHostOverlappedSize(DWORD* pcb) override {
    if (pcb == nullptr) return E_POINTER;
    *pcb = IOCM_HOST_OVERLAPPED_SIZE;
    return S_OK;
  }
  HRESULT SetCLRIoCompletionManager(ICLRIoCompletionManager* m) override {
    return core_->set_clr(m);
  }
  HRESULT InitializeHostOverlapped(void* pv) override {
    return engine_core::initialize_overlapped(pv);
  }
  HRESULT Bind(HANDLE hPort, HANDLE hHandle) override { return core_->bind(hPort, hHandle); }
  HRESULT SetMinThreads(DWORD n) override { return core_->set_min_threads(n); }
  HRESULT GetMinThreads(DWORD* n) override { return core_->get_min_threads(n); }

  // IIocmHostIo
  HRESULT Unbind(HANDLE h) override { return core_->unbind(h); }
  HRESULT Read(HANDLE h, void* buf, DWORD len, OVERLAPPED* ov) override {
    return core_->submit(op_kind::read, h, buf, len, file_offset(ov), ov);
  }
  HRESULT Write(HANDLE h, const void* buf, DWORD len, OVERLAPPED* ov) override {
    return core_->submit(op_kind::write, h, const_cast<void*>(buf), len, file_offset(ov), ov);
  }
  HRESULT Recv(HANDLE h, void* buf, DWORD len, OVERLAPPED* ov) override {
    return core_->submit(op_kind::recv, h, buf, len, 0, ov);
  }
  HRESULT Send(HANDLE h, const void* buf, DWORD len, OVERLAPPED* ov) override {
    return core_->submit(op_kind::send, h, const_cast<void*>(buf), len, 0, ov);
  }
  HRESULT Accept(HANDLE h, HANDLE* accepted, OVERLAPPED* ov) override {
    if (accepted == nullptr) return E_POINTER;
    return core_->submit(op_kind::accept, h, accepted, 0, 0, ov);
  }
  HRESULT Connect(HANDLE h, const void* addr, DWORD len, OVERLAPPED* ov) override {
    if (addr == nullptr) return E_POINTER;
    if (len == 0 || len > 128) return E_INVALIDARG;
    return core_->submit(op_kind::connect, h, const_cast<void*>(addr), 0, len, ov);
  }
  HRESULT Post(HANDLE port, DWORD error, DWORD bytes, OVERLAPPED* ov) override {
    return core_->post(port, error, bytes, ov);
  }
  HRESULT Cancel(HANDLE h, OVERLAPPED* ov) override { return core_->cancel(h, ov); }
  HRESULT Nop(HANDLE h, OVERLAPPED* ov) override {
    return core_->submit(op_kind::nop, h, nullptr, 0, 0, ov);
  }
  // IIocmHostIo2
  HRESULT SetCompletionModes(HANDLE h, DWORD modes) override {
    return core_->set_completion_modes(h, modes);
  }

  // IIocmPump. The manager may be destroyed (the last Release inside
  // OnComplete) once pump() has returned: nothing here touches it after.
  HRESULT Pump(DWORD ms, DWORD* delivered) override { return core_->pump(ms, delivered); }

  // IIocmMetrics: the caller's first struct_size bytes, at most this
  // version's struct.
  HRESULT GetMetrics(iocm_metrics* out) override {
    if (out == nullptr) return E_POINTER;
    const std::uint32_t size = out->struct_size;
    if (size < sizeof(iocm_metrics)) return E_INVALIDARG;
    iocm_metrics m{};
    core_->metrics(m);
    m.struct_size = size;
    std::memcpy(out, &m, sizeof m);
    return S_OK;
  }

 private:
  static void destroy(com_manager* self) noexcept {
    destroy_off_notifier(*self->core_, [self] { delete self; });
  }

  std::unique_ptr<engine_core> core_;
  std::atomic<ULONG> refs_{1};
};

}  // namespace

}  // namespace iocm::detail

extern "C" {

void iocm_config_init_sized(iocm_config* config, std::uint32_t size) noexcept {
  if (config == nullptr || (size != sizeof(iocm_config) && size != IOCM_CONFIG_SIZE_V1)) return;
  iocm_config defaults{};
  defaults.struct_size = size;
  defaults.queue_capacity = 4096;
  defaults.inbox_capacity = 4096;
  defaults.notifier_spin = 256;
  defaults.max_ports = 64;
  for (const iocm::detail::poller_backend& b : iocm::detail::poller_backends())
    b.set_defaults(defaults);            // their own options (io_uring: the ring)
  std::memcpy(config, &defaults, size);  // no byte past the caller's layout
}

// The 0.1.0 entry point, for programs built against its header (whose
// iocm_config ends at flags); the parentheses keep the macro out.
void(iocm_config_init)(iocm_config* config) noexcept {
  iocm_config_init_sized(config, IOCM_CONFIG_SIZE_V1);
}

iocm::hosting::HRESULT iocm_create_host_io_completion_manager(
    const iocm_config* config, iocm::hosting::IHostIoCompletionManager** manager) noexcept {
  using namespace iocm::hosting;
  if (manager == nullptr) return E_POINTER;
  *manager = nullptr;
  HRESULT hr = S_OK;
  auto core = iocm::detail::engine_core::build(config, &hr, nullptr);
  if (!core) return hr;
  auto* m = new (std::nothrow) iocm::detail::com_manager(std::move(core));
  if (m == nullptr) return E_OUTOFMEMORY;
  *manager = m;
  return S_OK;
}

iocm::hosting::HRESULT iocm_describe_placement(const iocm_config* config, char* text,
                                               std::size_t size, std::size_t* needed) noexcept {
  using namespace iocm::hosting;
  if (text == nullptr && size != 0) return E_POINTER;
  iocm::detail::engine_setup setup;
  std::string why;
  const HRESULT hr = iocm::detail::prepare_setup(config, setup, why);
  std::string out;
  try {
    out =
        FAILED(hr)
            ? why
            : iocm::detail::describe_plan(setup.plan, setup.reach, setup.config.max_threads) + [&] {
                const std::string w = iocm::detail::unreachable_warning(setup.plan, setup.reach);
                return w.empty() ? std::string() : "warning: " + w + "\n";
              }();
  } catch (const std::bad_alloc&) {
    return E_OUTOFMEMORY;
  }
  if (needed != nullptr) *needed = out.size() + 1;
  if (size != 0) {
    const std::size_t n = std::min(size - 1, out.size());
    std::memcpy(text, out.data(), n);
    text[n] = '\0';
  }
  if (FAILED(hr)) return hr;
  return size > out.size() ? S_OK : HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER);
}

}  // extern "C"
