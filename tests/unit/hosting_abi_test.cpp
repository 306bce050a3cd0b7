// The hosting ABI matches MSCorEE.h: vtable slots in IDL order, Win64 type
// sizes, GUIDs, HRESULT and Win32 constants; and the headers' C face
// (hosting_c_side.c, compiled as C) agrees with their C++ face.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "iocm/host_io.h"
#include "iocm/hosting.h"
#include "unit/hosting_c_side.h"

using namespace iocm::hosting;

namespace {

/// The vtable slot a virtual member function occupies. Itanium C++ ABI: a
/// pointer to a virtual member stores 1 + the slot's byte offset.
template <class F>
std::ptrdiff_t slot_of(F member) {
  static_assert(sizeof(F) == 2 * sizeof(std::ptrdiff_t), "Itanium member-pointer layout");
  std::ptrdiff_t raw[2];
  std::memcpy(raw, &member, sizeof raw);
  REQUIRE((raw[0] & 1) == 1);  // virtual
  return (raw[0] - 1) / static_cast<std::ptrdiff_t>(sizeof(void*));
}

}  // namespace

TEST_CASE("IUnknown and ICLRIoCompletionManager slots are in IDL order") {
  CHECK(slot_of(&IUnknown::QueryInterface) == 0);
  CHECK(slot_of(&IUnknown::AddRef) == 1);
  CHECK(slot_of(&IUnknown::Release) == 2);
  CHECK(slot_of(&ICLRIoCompletionManager::OnComplete) == 3);
}

TEST_CASE("IHostIoCompletionManager slots are in IDL order, not alphabetical") {
  using M = IHostIoCompletionManager;
  CHECK(slot_of(&M::CreateIoCompletionPort) == 3);
  CHECK(slot_of(&M::CloseIoCompletionPort) == 4);
  CHECK(slot_of(&M::SetMaxThreads) == 5);
  CHECK(slot_of(&M::GetMaxThreads) == 6);
  CHECK(slot_of(&M::GetAvailableThreads) == 7);
  CHECK(slot_of(&M::GetHostOverlappedSize) == 8);
  CHECK(slot_of(&M::SetCLRIoCompletionManager) == 9);
  CHECK(slot_of(&M::InitializeHostOverlapped) == 10);
  CHECK(slot_of(&M::Bind) == 11);
  CHECK(slot_of(&M::SetMinThreads) == 12);
  CHECK(slot_of(&M::GetMinThreads) == 13);
}

TEST_CASE("types have their Win64 sizes") {
  CHECK(sizeof(HRESULT) == 4);
  CHECK(sizeof(DWORD) == 4);
  CHECK(sizeof(HANDLE) == 8);
  CHECK(sizeof(GUID) == 16);
  CHECK(sizeof(OVERLAPPED) == 32);
}

TEST_CASE("GUIDs are the published ones") {
  const IID host{0x8BDE9D80, 0xEC06, 0x41D6, {0x83, 0xE6, 0x22, 0x58, 0x0E, 0xFF, 0xCC, 0x20}};
  const IID clr{0x2D74CE86, 0xB8D6, 0x4C84, {0xB3, 0xA7, 0x97, 0x68, 0x93, 0x3B, 0x3C, 0x12}};
  CHECK(IID_IHostIoCompletionManager == host);
  CHECK(IID_ICLRIoCompletionManager == clr);
  CHECK_FALSE(IID_IHostIoCompletionManager == IID_ICLRIoCompletionManager);
  CHECK(IID_IUnknown.Data4[0] == 0xC0);
  CHECK(IID_IUnknown.Data4[7] == 0x46);
}

TEST_CASE("HRESULT constants and HRESULT_FROM_WIN32") {
  CHECK(static_cast<std::uint32_t>(HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE)) == 0x80070006u);
  CHECK(HRESULT_FROM_WIN32(ERROR_INVALID_PARAMETER) == E_INVALIDARG);
  CHECK(HRESULT_FROM_WIN32(14) == E_OUTOFMEMORY);  // ERROR_OUTOFMEMORY
  CHECK(HRESULT_FROM_WIN32(0) == S_OK);
  CHECK(FAILED(HOST_E_CLRNOTAVAILABLE));
  CHECK(static_cast<std::uint32_t>(HOST_E_CLRNOTAVAILABLE) == 0x80131023u);
  CHECK(static_cast<std::uint32_t>(HOST_E_NOT_OWNER) == 0x80131025u);
  CHECK(SUCCEEDED(S_FALSE));
  CHECK(ERROR_OPERATION_ABORTED == 995);
  CHECK(ERROR_IO_PENDING == 997);
}

TEST_CASE("the C vtable structs have each method in the C++ interface's slot") {
  // Every slot of every interface, C struct against C++ class.
#define SAME_SLOT(I, method)                                           \
  CHECK_MESSAGE(slot_of(&I::method) * std::ptrdiff_t{sizeof(void*)} == \
                    std::ptrdiff_t{offsetof(I##Vtbl, method)},         \
                #I "::" #method)
  SAME_SLOT(IUnknown, QueryInterface);
  SAME_SLOT(IUnknown, AddRef);
  SAME_SLOT(IUnknown, Release);
  SAME_SLOT(ICLRIoCompletionManager, OnComplete);
  SAME_SLOT(IHostIoCompletionManager, CreateIoCompletionPort);
  SAME_SLOT(IHostIoCompletionManager, CloseIoCompletionPort);
  SAME_SLOT(IHostIoCompletionManager, SetMaxThreads);
  SAME_SLOT(IHostIoCompletionManager, GetMaxThreads);
  SAME_SLOT(IHostIoCompletionManager, GetAvailableThreads);
  SAME_SLOT(IHostIoCompletionManager, GetHostOverlappedSize);
  SAME_SLOT(IHostIoCompletionManager, SetCLRIoCompletionManager);
  SAME_SLOT(IHostIoCompletionManager, InitializeHostOverlapped);
  SAME_SLOT(IHostIoCompletionManager, Bind);
  SAME_SLOT(IHostIoCompletionManager, SetMinThreads);
  SAME_SLOT(IHostIoCompletionManager, GetMinThreads);
  SAME_SLOT(IIocmHostIo, Unbind);
  SAME_SLOT(IIocmHostIo, Read);
  SAME_SLOT(IIocmHostIo, Write);
  SAME_SLOT(IIocmHostIo, Recv);
  SAME_SLOT(IIocmHostIo, Send);
  SAME_SLOT(IIocmHostIo, Accept);
  SAME_SLOT(IIocmHostIo, Connect);
  SAME_SLOT(IIocmHostIo, Post);
  SAME_SLOT(IIocmHostIo, Cancel);
  SAME_SLOT(IIocmHostIo, Nop);
  SAME_SLOT(IIocmHostIo2, Nop);
  SAME_SLOT(IIocmHostIo2, SetCompletionModes);
  SAME_SLOT(IIocmPump, Pump);
#undef SAME_SLOT
}

TEST_CASE("the headers compiled as C give every size, offset, constant and IID that C++ does") {
  const std::int64_t cpp[] = {
#define IOCM_CPP_VALUE(expression) static_cast<std::int64_t>(expression),
      IOCM_BOTH_SIDES(IOCM_CPP_VALUE)
#undef IOCM_CPP_VALUE
  };
  constexpr std::size_t n = sizeof cpp / sizeof cpp[0];
  std::int64_t c[n + 1] = {};
  REQUIRE(iocm_c_side_values(c, n + 1) == n);
  const char* names[] = {
#define IOCM_NAME(expression) #expression,
      IOCM_BOTH_SIDES(IOCM_NAME)
#undef IOCM_NAME
  };
  for (std::size_t i = 0; i < n; ++i) CHECK_MESSAGE(c[i] == cpp[i], names[i]);
  CHECK(cpp[0] == 32);  // the list is not vacuous: sizeof(OVERLAPPED)
}

namespace {
struct counting_runtime final : ICLRIoCompletionManager {
  HRESULT QueryInterface(const IID&, void** p) override {
    *p = nullptr;
    return E_NOINTERFACE;
  }
  ULONG AddRef() override { return ++refs; }
  ULONG Release() override { return --refs; }
  HRESULT OnComplete(DWORD error, DWORD bytes, void* ov) override {
    seen_error = error;
    seen_bytes = bytes;
    seen_ov = ov;
    return S_FALSE;
  }
  ULONG refs = 1;
  DWORD seen_error = 0, seen_bytes = 0;
  void* seen_ov = nullptr;
};
}  // namespace

TEST_CASE("C calls a C++ object through lpVtbl") {
  counting_runtime rt;
  int marker = 0;
  CHECK(iocm_c_side_on_complete(&rt, 995, 4096, &marker) == S_FALSE);
  CHECK(rt.seen_error == 995);
  CHECK(rt.seen_bytes == 4096);
  CHECK(rt.seen_ov == &marker);
  CHECK(rt.refs == 1);
}
