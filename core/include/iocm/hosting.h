// iocm/hosting.h — the .NET Framework hosting ABI for I/O completion, laid out
// as MSCorEE.h lays it out, so that a binary host written against it works.
//
// It compiles as C++20 and as C11, as MSCorEE.h serves both:
// - C++: the interfaces are abstract classes in namespace iocm::hosting,
//   called as p->Bind(port, h); constants are constexpr.
// - C: each interface is a struct whose only member is lpVtbl, a pointer to
//   its vtable struct (<Interface>Vtbl), called as
//   p->lpVtbl->Bind(p, port, h); constants are enumerators (HRESULTs, Win32
//   codes) and HRESULT_FROM_WIN32, SUCCEEDED and FAILED are macros.
// The vtable structs are declared in both languages, with the slot of each
// method asserted at compile time; a test proves that a C++ object's vtable
// and the C struct agree, and a C program drives the engine through them.
//
// Vtable order is the IDL order (not alphabetical): IUnknown's three slots,
// then each interface's methods as declared below. Types follow the Win64
// data model (LLP64): DWORD and HRESULT are 32-bit, HANDLE and ULONG_PTR are
// pointer-sized. On x86-64 Linux there is one calling convention, so no
// __stdcall is needed for the vtables to match.
//
// OVERLAPPED is declared as Windows declares it, with a nameless union and
// struct, so code from Windows writes ov.Offset and ov.OffsetHigh in both
// languages (CoreCLR's PAL declares it flat, with the same layout). Define
// NONAMELESSUNION before including this header for Windows' named spelling
// ov.u.s.Offset instead.
//
// This header declares only. iocm's engine implements IHostIoCompletionManager
// (see iocm/host_io.h for the entry point and the operations interface).
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define IOCM_STATIC_ASSERT(condition, message) static_assert(condition, message)
#else
#define IOCM_STATIC_ASSERT(condition, message) _Static_assert(condition, message)
#endif

/// Declares an interface ID: a constexpr IID in C++, a static const IID in
/// C (as DEFINE_GUID does with INITGUID, each translation unit its own).
#ifdef __cplusplus
#define IOCM_DEFINE_IID(name, l, w1, w2, b1, b2, b3, b4, b5, b6, b7, b8) \
  inline constexpr IID name = {l, w1, w2, {b1, b2, b3, b4, b5, b6, b7, b8}}
#else
#define IOCM_DEFINE_IID(name, l, w1, w2, b1, b2, b3, b4, b5, b6, b7, b8) \
  static const IID name __attribute__((unused)) = {l, w1, w2, {b1, b2, b3, b4, b5, b6, b7, b8}}
#endif

// Windows' names for OVERLAPPED's nameless members (winnt.h).
#ifndef DUMMYUNIONNAME
#ifdef NONAMELESSUNION
#define DUMMYUNIONNAME u
#define DUMMYSTRUCTNAME s
#else
#define DUMMYUNIONNAME
#define DUMMYSTRUCTNAME
#endif
#endif

#ifdef __cplusplus
namespace iocm::hosting {
#endif

typedef int32_t HRESULT;
typedef uint32_t DWORD;
typedef uint32_t ULONG;
typedef uintptr_t ULONG_PTR;
typedef void* HANDLE;
typedef void* PVOID;

typedef struct GUID {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  uint8_t Data4[8];
} GUID;
typedef GUID IID;

/// The Win32 OVERLAPPED, Win64 layout (32 bytes). The runtime allocates
/// GetHostOverlappedSize() bytes for the host right after it.
typedef struct OVERLAPPED {
  ULONG_PTR Internal;      // status of the request (NTSTATUS)
  ULONG_PTR InternalHigh;  // bytes transferred
  __extension__ union {
    __extension__ struct {
      DWORD Offset;      // file offset, low 32 bits
      DWORD OffsetHigh;  // file offset, high 32 bits
    } DUMMYSTRUCTNAME;
    PVOID Pointer;
  } DUMMYUNIONNAME;
  HANDLE hEvent;
} OVERLAPPED;
IOCM_STATIC_ASSERT(sizeof(OVERLAPPED) == 32, "Win64 OVERLAPPED is 32 bytes");
IOCM_STATIC_ASSERT(offsetof(OVERLAPPED, InternalHigh) == 8 && offsetof(OVERLAPPED, hEvent) == 24,
                   "OVERLAPPED fields sit where Win64 puts them");

// HRESULTs (winerror.h, corerror.h) and the Win32 error codes (winerror.h)
// that iocm reports, each once: X(name, value).
#define IOCM_HRESULTS(X)                  \
  X(S_OK, 0)                              \
  X(S_FALSE, 1)                           \
  X(E_NOTIMPL, 0x80004001u)               \
  X(E_NOINTERFACE, 0x80004002u)           \
  X(E_POINTER, 0x80004003u)               \
  X(E_FAIL, 0x80004005u)                  \
  X(E_OUTOFMEMORY, 0x8007000Eu)           \
  X(E_INVALIDARG, 0x80070057u)            \
  X(HOST_E_INTERRUPTED, 0x80131021u)      \
  X(HOST_E_INVALIDOPERATION, 0x80131022u) \
  X(HOST_E_CLRNOTAVAILABLE, 0x80131023u)  \
  X(HOST_E_TIMEOUT, 0x80131024u)          \
  X(HOST_E_NOT_OWNER, 0x80131025u)        \
  X(HOST_E_ABANDONED, 0x80131026u)

#define IOCM_WIN32_ERRORS(X)                \
  X(ERROR_SUCCESS, 0)                       \
  X(ERROR_INVALID_FUNCTION, 1)              \
  X(ERROR_FILE_NOT_FOUND, 2)                \
  X(ERROR_TOO_MANY_OPEN_FILES, 4)           \
  X(ERROR_ACCESS_DENIED, 5)                 \
  X(ERROR_INVALID_HANDLE, 6)                \
  X(ERROR_NOT_ENOUGH_MEMORY, 8)             \
  X(ERROR_WRITE_PROTECT, 19)                \
  X(ERROR_SEEK, 25)                         \
  X(ERROR_GEN_FAILURE, 31)                  \
  X(ERROR_HANDLE_EOF, 38)                   \
  X(ERROR_NOT_SUPPORTED, 50)                \
  X(ERROR_DEV_NOT_EXIST, 55)                \
  X(ERROR_NETNAME_DELETED, 64)              \
  X(ERROR_INVALID_PARAMETER, 87)            \
  X(ERROR_BROKEN_PIPE, 109)                 \
  X(ERROR_DISK_FULL, 112)                   \
  X(ERROR_SEM_TIMEOUT, 121)                 \
  X(ERROR_INSUFFICIENT_BUFFER, 122)         \
  X(ERROR_BUSY, 170)                        \
  X(ERROR_ALREADY_EXISTS, 183)              \
  X(ERROR_FILE_TOO_LARGE, 223)              \
  X(ERROR_MORE_DATA, 234)                   \
  X(ERROR_DIRECTORY, 267)                   \
  X(ERROR_OPERATION_ABORTED, 995)           \
  X(ERROR_IO_INCOMPLETE, 996)               \
  X(ERROR_IO_PENDING, 997)                  \
  X(ERROR_NOACCESS, 998)                    \
  X(ERROR_IO_DEVICE, 1117)                  \
  X(ERROR_NOT_FOUND, 1168)                  \
  X(ERROR_CONNECTION_REFUSED, 1225)         \
  X(ERROR_ADDRESS_ALREADY_ASSOCIATED, 1227) \
  X(ERROR_CONNECTION_INVALID, 1229)         \
  X(ERROR_NETWORK_UNREACHABLE, 1231)        \
  X(ERROR_HOST_UNREACHABLE, 1232)           \
  X(ERROR_CONNECTION_ABORTED, 1236)         \
  X(ERROR_RETRY, 1237)                      \
  X(ERROR_DISK_QUOTA_EXCEEDED, 1295)        \
  X(ERROR_NO_SYSTEM_RESOURCES, 1450)        \
  X(ERROR_TIMEOUT, 1460)

#ifdef __cplusplus
#define IOCM_HRESULT_CONSTANT(name, value) \
  inline constexpr HRESULT name = static_cast<HRESULT>(value);
#define IOCM_WIN32_CONSTANT(name, value) inline constexpr DWORD name = value;
IOCM_HRESULTS(IOCM_HRESULT_CONSTANT)
IOCM_WIN32_ERRORS(IOCM_WIN32_CONSTANT)
#undef IOCM_HRESULT_CONSTANT
#undef IOCM_WIN32_CONSTANT

constexpr bool operator==(const GUID& a, const GUID& b) noexcept {
  if (a.Data1 != b.Data1 || a.Data2 != b.Data2 || a.Data3 != b.Data3) return false;
  for (int i = 0; i < 8; ++i)
    if (a.Data4[i] != b.Data4[i]) return false;
  return true;
}

/// HRESULT_FROM_WIN32: 0 stays S_OK; other codes get FACILITY_WIN32 (7) and
/// the failure bit.
constexpr HRESULT HRESULT_FROM_WIN32(DWORD error) noexcept {
  return error == 0 ? S_OK : static_cast<HRESULT>((error & 0x0000FFFFu) | (7u << 16) | 0x80000000u);
}
constexpr bool SUCCEEDED(HRESULT hr) noexcept { return hr >= 0; }
constexpr bool FAILED(HRESULT hr) noexcept { return hr < 0; }
#else
#define IOCM_C_ENUMERATOR(name, value) name = (HRESULT)(value),
enum iocm_hresult_values { IOCM_HRESULTS(IOCM_C_ENUMERATOR) };
enum iocm_win32_error_values { IOCM_WIN32_ERRORS(IOCM_C_ENUMERATOR) };
#undef IOCM_C_ENUMERATOR
#define HRESULT_FROM_WIN32(error) \
  ((DWORD)(error) == 0 ? S_OK : (HRESULT)(((DWORD)(error)&0x0000FFFFu) | (7u << 16) | 0x80000000u))
#define SUCCEEDED(hr) ((HRESULT)(hr) >= 0)
#define FAILED(hr) ((HRESULT)(hr) < 0)
#endif

// {00000000-0000-0000-C000-000000000046}
IOCM_DEFINE_IID(IID_IUnknown, 0x00000000, 0x0000, 0x0000, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x46);
// {8BDE9D80-EC06-41d6-83E6-22580EFFCC20}
IOCM_DEFINE_IID(IID_IHostIoCompletionManager, 0x8BDE9D80, 0xEC06, 0x41D6, 0x83, 0xE6, 0x22, 0x58,
                0x0E, 0xFF, 0xCC, 0x20);
// {2D74CE86-B8D6-4C84-B3A7-9768933B3C12}
IOCM_DEFINE_IID(IID_ICLRIoCompletionManager, 0x2D74CE86, 0xB8D6, 0x4C84, 0xB3, 0xA7, 0x97, 0x68,
                0x93, 0x3B, 0x3C, 0x12);

// The interfaces, named before their vtables refer to them.
#ifdef __cplusplus
struct IUnknown;
struct ICLRIoCompletionManager;
struct IHostIoCompletionManager;
#else
typedef struct IUnknown IUnknown;
typedef struct ICLRIoCompletionManager ICLRIoCompletionManager;
typedef struct IHostIoCompletionManager IHostIoCompletionManager;
#endif

/// IUnknown's three slots, first in every vtable, for interface T.
#define IOCM_IUNKNOWN_SLOTS(T)                                            \
  HRESULT (*QueryInterface)(T * This, const IID* riid, void** ppvObject); \
  ULONG (*AddRef)(T * This);                                              \
  ULONG (*Release)(T * This);

// (clang-format would break the function-pointer members apart.)
// clang-format off
/// The vtables as C lays them out: one function pointer per slot, each
/// taking the interface pointer first.
typedef struct IUnknownVtbl {
  IOCM_IUNKNOWN_SLOTS(IUnknown)
} IUnknownVtbl;

typedef struct ICLRIoCompletionManagerVtbl {
  IOCM_IUNKNOWN_SLOTS(ICLRIoCompletionManager)
  HRESULT (*OnComplete)(ICLRIoCompletionManager* This, DWORD dwErrorCode,
                        DWORD NumberOfBytesTransferred, void* pvOverlapped);
} ICLRIoCompletionManagerVtbl;

typedef struct IHostIoCompletionManagerVtbl {
  IOCM_IUNKNOWN_SLOTS(IHostIoCompletionManager)
  HRESULT (*CreateIoCompletionPort)(IHostIoCompletionManager* This, HANDLE* phPort);
  HRESULT (*CloseIoCompletionPort)(IHostIoCompletionManager* This, HANDLE hPort);
  HRESULT (*SetMaxThreads)(IHostIoCompletionManager* This, DWORD dwMaxIOCompletionThreads);
  HRESULT (*GetMaxThreads)(IHostIoCompletionManager* This, DWORD* pdwMaxIOCompletionThreads);
  HRESULT (*GetAvailableThreads)(IHostIoCompletionManager* This,
                                 DWORD* pdwAvailableIOCompletionThreads);
  HRESULT (*GetHostOverlappedSize)(IHostIoCompletionManager* This, DWORD* pcbSize);
  HRESULT (*SetCLRIoCompletionManager)(IHostIoCompletionManager* This,
                                       ICLRIoCompletionManager* pManager);
  HRESULT (*InitializeHostOverlapped)(IHostIoCompletionManager* This, void* pvOverlapped);
  HRESULT (*Bind)(IHostIoCompletionManager* This, HANDLE hPort, HANDLE hHandle);
  HRESULT (*SetMinThreads)(IHostIoCompletionManager* This, DWORD dwMinIOCompletionThreads);
  HRESULT (*GetMinThreads)(IHostIoCompletionManager* This, DWORD* pdwMinIOCompletionThreads);
} IHostIoCompletionManagerVtbl;
// clang-format on

/// Asserts that `method` is slot `slot` of vtable struct `vtbl`.
#define IOCM_ASSERT_SLOT(vtbl, method, slot)                           \
  IOCM_STATIC_ASSERT(offsetof(vtbl, method) == (slot) * sizeof(void*), \
                     #vtbl "::" #method " is slot " #slot)
IOCM_ASSERT_SLOT(IUnknownVtbl, Release, 2);
IOCM_ASSERT_SLOT(ICLRIoCompletionManagerVtbl, OnComplete, 3);
IOCM_ASSERT_SLOT(IHostIoCompletionManagerVtbl, CreateIoCompletionPort, 3);
IOCM_ASSERT_SLOT(IHostIoCompletionManagerVtbl, Bind, 11);
IOCM_ASSERT_SLOT(IHostIoCompletionManagerVtbl, GetMinThreads, 13);
IOCM_STATIC_ASSERT(sizeof(IHostIoCompletionManagerVtbl) == 14 * sizeof(void*), "14 slots");

#ifdef __cplusplus
/// COM's base interface.
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
#else
/// In C an interface pointer points at its vtable pointer.
struct IUnknown {
  const IUnknownVtbl* lpVtbl;
};
struct ICLRIoCompletionManager {
  const ICLRIoCompletionManagerVtbl* lpVtbl;
};
struct IHostIoCompletionManager {
  const IHostIoCompletionManagerVtbl* lpVtbl;
};
#endif
