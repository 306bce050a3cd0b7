// A minimal host: creates the manager through the C entry point, posts one
// completion and one nop, waits for both, and checks the version; then the
// same through the C++ face (iocm::engine), which must link from the shared
// library as from the static one.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include <iocm/engine.h>
#include <iocm/host_io.h>
#include <iocm/version.h>
#include <iocm/win32_errors.h>

using namespace iocm::hosting;

struct runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** p) override {
    *p = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return 2; }
  ULONG Release() override { return 1; }
  HRESULT OnComplete(DWORD, DWORD, void*) override {
    done.fetch_add(1);
    return S_OK;
  }
  std::atomic<int> done{0};
};

struct handler final : iocm::completion_handler {
  void on_complete(std::uint32_t, std::uint32_t, OVERLAPPED*) noexcept override {
    done.fetch_add(1);
  }
  std::atomic<int> done{0};
};

/// The C++ face: an engine, a port, one Post delivered; errors through
/// the library's own category and errno table.
int cpp_face() {
  handler h;
  iocm::engine e(h);
  iocm::overlapped o;
  const auto port = e.create_port();
  if (e.post(port, 0, 7, o)) return 20;
  for (int i = 0; i < 10000 && h.done.load() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (h.done.load() != 1) return 21;
  if (e.close_port(port)) return 22;
  if (e.close_port(port).category() != iocm::hresult_category()) return 23;  // closed already
  if (iocm::win32_from_errno(ECANCELED) != 995) return 24;
  return 0;
}

int main() {
  if (std::strcmp(iocm_version(), IOCM_VERSION_STRING) != 0) return 10;
  runtime rt;
  IHostIoCompletionManager* m = nullptr;
  if (iocm_create_host_io_completion_manager(nullptr, &m) != S_OK) return 11;
  void* io_raw = nullptr;
  if (m->QueryInterface(IID_IIocmHostIo, &io_raw) != S_OK) return 12;
  auto* io = static_cast<IIocmHostIo*>(io_raw);
  HANDLE port = nullptr;
  int fds[2];
  if (m->SetCLRIoCompletionManager(&rt) != S_OK || m->CreateIoCompletionPort(&port) != S_OK ||
      ::pipe(fds) != 0 ||
      m->Bind(port, reinterpret_cast<HANDLE>(static_cast<intptr_t>(fds[0]))) != S_OK)
    return 13;
  iocm::overlapped a, b;
  if (io->Post(port, 0, 0, &a.ov) != IOCM_E_IO_PENDING) return 14;
  if (io->Nop(reinterpret_cast<HANDLE>(static_cast<intptr_t>(fds[0])), &b.ov) != IOCM_E_IO_PENDING)
    return 15;
  for (int i = 0; i < 10000 && rt.done.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  io->Release();
  m->Release();
  std::printf("iocm %s: %d completions\n", iocm_version(), rt.done.load());
  if (rt.done.load() != 2) return 16;
  return cpp_face();
}
