// iocm/hosting.h — the .NET Framework hosting ABI for I/O completion, laid out
// as MSCorEE.h lays it out, so that a binary host written against it works.
//
// Vtable order is the IDL order (not alphabetical): IUnknown's three slots,
// then each interface's methods as declared below. A test proves each slot.
// Types follow the Win64 data model (LLP64): DWORD and HRESULT are 32-bit,
// HANDLE and ULONG_PTR are pointer-sized.
//
// This header declares only. iocm's engine implements IHostIoCompletionManager
// (see iocm/host_io.h for the entry point and the operations interface).
#pragma once

#include <cstddef>
#include <cstdint>

namespace iocm::hosting {

using HRESULT = std::int32_t;
using DWORD = std::uint32_t;
using ULONG = std::uint32_t;
using ULONG_PTR = std::uintptr_t;
using HANDLE = void*;
using PVOID = void*;

struct GUID {
  std::uint32_t Data1;
  std::uint16_t Data2;
  std::uint16_t Data3;
  std::uint8_t Data4[8];
};
using IID = GUID;
constexpr bool operator==(const GUID& a, const GUID& b) noexcept {
  if (a.Data1 != b.Data1 || a.Data2 != b.Data2 || a.Data3 != b.Data3) return false;
  for (int i = 0; i < 8; ++i)
    if (a.Data4[i] != b.Data4[i]) return false;
  return true;
}

/// The Win32 OVERLAPPED, Win64 layout (32 bytes). The runtime allocates
/// GetHostOverlappedSize() bytes for the host right after it.
struct OVERLAPPED {
  ULONG_PTR Internal;      // status of the request (NTSTATUS)
  ULONG_PTR InternalHigh;  // bytes transferred
  union {
    struct {
      DWORD Offset;      // file offset, low 32 bits
      DWORD OffsetHigh;  // file offset, high 32 bits
    } DUMMYSTRUCTNAME;
    PVOID Pointer;
  } DUMMYUNIONNAME;
  HANDLE hEvent;
};
static_assert(sizeof(OVERLAPPED) == 32, "Win64 OVERLAPPED is 32 bytes");
static_assert(offsetof(OVERLAPPED, InternalHigh) == 8 && offsetof(OVERLAPPED, hEvent) == 24,
              "OVERLAPPED fields sit where Win64 puts them");

// HRESULTs (winerror.h, corerror.h).
inline constexpr HRESULT S_OK = 0;
inline constexpr HRESULT S_FALSE = 1;
inline constexpr HRESULT E_NOTIMPL = static_cast<HRESULT>(0x80004001u);
inline constexpr HRESULT E_NOINTERFACE = static_cast<HRESULT>(0x80004002u);
inline constexpr HRESULT E_POINTER = static_cast<HRESULT>(0x80004003u);
inline constexpr HRESULT E_FAIL = static_cast<HRESULT>(0x80004005u);
inline constexpr HRESULT E_OUTOFMEMORY = static_cast<HRESULT>(0x8007000Eu);
inline constexpr HRESULT E_INVALIDARG = static_cast<HRESULT>(0x80070057u);
inline constexpr HRESULT HOST_E_INTERRUPTED = static_cast<HRESULT>(0x80131021u);
inline constexpr HRESULT HOST_E_INVALIDOPERATION = static_cast<HRESULT>(0x80131022u);
inline constexpr HRESULT HOST_E_CLRNOTAVAILABLE = static_cast<HRESULT>(0x80131023u);
inline constexpr HRESULT HOST_E_TIMEOUT = static_cast<HRESULT>(0x80131024u);
inline constexpr HRESULT HOST_E_NOT_OWNER = static_cast<HRESULT>(0x80131025u);
inline constexpr HRESULT HOST_E_ABANDONED = static_cast<HRESULT>(0x80131026u);

/// HRESULT_FROM_WIN32: 0 stays S_OK; other codes get FACILITY_WIN32 (7) and
/// the failure bit.
constexpr HRESULT HRESULT_FROM_WIN32(DWORD error) noexcept {
  return error == 0 ? S_OK : static_cast<HRESULT>((error & 0x0000FFFFu) | (7u << 16) | 0x80000000u);
}
constexpr bool SUCCEEDED(HRESULT hr) noexcept { return hr >= 0; }
constexpr bool FAILED(HRESULT hr) noexcept { return hr < 0; }

// Win32 error codes (winerror.h) that iocm reports.
inline constexpr DWORD ERROR_SUCCESS = 0;
inline constexpr DWORD ERROR_INVALID_FUNCTION = 1;
inline constexpr DWORD ERROR_FILE_NOT_FOUND = 2;
inline constexpr DWORD ERROR_TOO_MANY_OPEN_FILES = 4;
inline constexpr DWORD ERROR_ACCESS_DENIED = 5;
inline constexpr DWORD ERROR_INVALID_HANDLE = 6;
inline constexpr DWORD ERROR_NOT_ENOUGH_MEMORY = 8;
inline constexpr DWORD ERROR_WRITE_PROTECT = 19;
inline constexpr DWORD ERROR_SEEK = 25;
inline constexpr DWORD ERROR_GEN_FAILURE = 31;
inline constexpr DWORD ERROR_HANDLE_EOF = 38;
inline constexpr DWORD ERROR_NOT_SUPPORTED = 50;
inline constexpr DWORD ERROR_DEV_NOT_EXIST = 55;
inline constexpr DWORD ERROR_NETNAME_DELETED = 64;
inline constexpr DWORD ERROR_INVALID_PARAMETER = 87;
inline constexpr DWORD ERROR_BROKEN_PIPE = 109;
inline constexpr DWORD ERROR_DISK_FULL = 112;
inline constexpr DWORD ERROR_SEM_TIMEOUT = 121;
inline constexpr DWORD ERROR_INSUFFICIENT_BUFFER = 122;
inline constexpr DWORD ERROR_BUSY = 170;
inline constexpr DWORD ERROR_ALREADY_EXISTS = 183;
inline constexpr DWORD ERROR_FILE_TOO_LARGE = 223;
inline constexpr DWORD ERROR_MORE_DATA = 234;
inline constexpr DWORD ERROR_DIRECTORY = 267;
inline constexpr DWORD ERROR_OPERATION_ABORTED = 995;
inline constexpr DWORD ERROR_IO_INCOMPLETE = 996;
inline constexpr DWORD ERROR_IO_PENDING = 997;
inline constexpr DWORD ERROR_NOACCESS = 998;
inline constexpr DWORD ERROR_IO_DEVICE = 1117;
inline constexpr DWORD ERROR_NOT_FOUND = 1168;
inline constexpr DWORD ERROR_CONNECTION_REFUSED = 1225;
inline constexpr DWORD ERROR_ADDRESS_ALREADY_ASSOCIATED = 1227;
inline constexpr DWORD ERROR_CONNECTION_INVALID = 1229;
inline constexpr DWORD ERROR_NETWORK_UNREACHABLE = 1231;
inline constexpr DWORD ERROR_HOST_UNREACHABLE = 1232;
inline constexpr DWORD ERROR_CONNECTION_ABORTED = 1236;
inline constexpr DWORD ERROR_RETRY = 1237;
inline constexpr DWORD ERROR_DISK_QUOTA_EXCEEDED = 1295;
inline constexpr DWORD ERROR_NO_SYSTEM_RESOURCES = 1450;
inline constexpr DWORD ERROR_TIMEOUT = 1460;

// {00000000-0000-0000-C000-000000000046}
inline constexpr IID IID_IUnknown = {
    0x00000000, 0x0000, 0x0000, {0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x46}};
// {8BDE9D80-EC06-41d6-83E6-22580EFFCC20}
inline constexpr IID IID_IHostIoCompletionManager = {
    0x8BDE9D80, 0xEC06, 0x41D6, {0x83, 0xE6, 0x22, 0x58, 0x0E, 0xFF, 0xCC, 0x20}};
// {2D74CE86-B8D6-4C84-B3A7-9768933B3C12}
inline constexpr IID IID_ICLRIoCompletionManager = {
    0x2D74CE86, 0xB8D6, 0x4C84, {0xB3, 0xA7, 0x97, 0x68, 0x93, 0x3B, 0x3C, 0x12}};

/// COM's base interface. On x86-64 Linux there is one calling convention,
/// so no __stdcall is needed for the vtable to match.
struct IUnknown {
  virtual HRESULT QueryInterface(const IID& riid, void** ppvObject) = 0;  // slot 0
  virtual ULONG AddRef() = 0;                                             // slot 1
  virtual ULONG Release() = 0;                                            // slot 2

 protected:
  ~IUnknown() = default;  // lifetime goes through Release()
};

/// Implemented by the runtime; the host calls OnComplete once for every
/// request it accepted, from a thread the host owns.
struct ICLRIoCompletionManager : IUnknown {
  virtual HRESULT OnComplete(DWORD dwErrorCode, DWORD NumberOfBytesTransferred,
                             void* pvOverlapped) = 0;  // slot 3

 protected:
  ~ICLRIoCompletionManager() = default;
};

/// Implemented by the host (iocm). Methods in MSCorEE.idl order.
struct IHostIoCompletionManager : IUnknown {
  virtual HRESULT CreateIoCompletionPort(HANDLE* phPort) = 0;                        // slot 3
  virtual HRESULT CloseIoCompletionPort(HANDLE hPort) = 0;                           // slot 4
  virtual HRESULT SetMaxThreads(DWORD dwMaxIOCompletionThreads) = 0;                 // slot 5
  virtual HRESULT GetMaxThreads(DWORD* pdwMaxIOCompletionThreads) = 0;               // slot 6
  virtual HRESULT GetAvailableThreads(DWORD* pdwAvailableIOCompletionThreads) = 0;   // slot 7
  virtual HRESULT GetHostOverlappedSize(DWORD* pcbSize) = 0;                         // slot 8
  virtual HRESULT SetCLRIoCompletionManager(ICLRIoCompletionManager* pManager) = 0;  // slot 9
  virtual HRESULT InitializeHostOverlapped(void* pvOverlapped) = 0;                  // slot 10
  virtual HRESULT Bind(HANDLE hPort, HANDLE hHandle) = 0;                            // slot 11
  virtual HRESULT SetMinThreads(DWORD dwMinIOCompletionThreads) = 0;                 // slot 12
  virtual HRESULT GetMinThreads(DWORD* pdwMinIOCompletionThreads) = 0;               // slot 13

 protected:
  ~IHostIoCompletionManager() = default;
};

}  // namespace iocm::hosting
