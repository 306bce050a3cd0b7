// The hosting ABI matches MSCorEE.h: vtable slots in IDL order, Win64 type
// sizes, GUIDs, HRESULT and Win32 constants.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>

#include "iocm/hosting.h"

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
