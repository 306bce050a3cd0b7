// What the hosting headers declare, as expressions both languages evaluate:
// hosting_c_side.c computes them compiled as C, hosting_abi_test.cpp as
// C++, and the test compares the two lists entry by entry.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "iocm/host_io.h"

#define IOCM_BOTH_SIDES(X)                                 \
  X(sizeof(OVERLAPPED))                                    \
  X(offsetof(OVERLAPPED, Offset))                          \
  X(offsetof(OVERLAPPED, OffsetHigh))                      \
  X(offsetof(OVERLAPPED, Pointer))                         \
  X(offsetof(OVERLAPPED, hEvent))                          \
  X(sizeof(GUID))                                          \
  X(sizeof(HRESULT))                                       \
  X(sizeof(DWORD))                                         \
  X(sizeof(ULONG_PTR))                                     \
  X(S_FALSE)                                               \
  X(E_NOINTERFACE)                                         \
  X(E_INVALIDARG)                                          \
  X(HOST_E_CLRNOTAVAILABLE)                                \
  X(HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE))              \
  X(HRESULT_FROM_WIN32(ERROR_SUCCESS))                     \
  X(HRESULT_FROM_WIN32(ERROR_NO_SYSTEM_RESOURCES))         \
  X(ERROR_OPERATION_ABORTED)                               \
  X(ERROR_TIMEOUT)                                         \
  X(IOCM_E_IO_PENDING)                                     \
  X(IOCM_INFINITE)                                         \
  X(IOCM_SKIP_COMPLETION_ON_SUCCESS)                       \
  X(IOCM_RECEIVE_AHEAD)                                    \
  X(IOCM_ACCEPT_AHEAD)                                     \
  X(IOCM_HOST_OVERLAPPED_SIZE)                             \
  X(IOCM_CONFIG_SIZE_V1)                                   \
  X(IOCM_INLINE_ALL)                                       \
  X(IOCM_BACKEND_EPOLL)                                    \
  X(sizeof(iocm_config))                                   \
  X(offsetof(iocm_config, flags))                          \
  X(offsetof(iocm_config, log))                            \
  X(offsetof(iocm_config, log_context))                    \
  X(IID_IIocmHostIo.Data1)                                 \
  X(IID_IIocmHostIo2.Data4[7])                             \
  X(IID_IIocmPump.Data2)                                   \
  X(IID_IHostIoCompletionManager.Data3)                    \
  X(sizeof(IHostIoCompletionManagerVtbl))                  \
  X(offsetof(IHostIoCompletionManagerVtbl, GetMinThreads)) \
  X(offsetof(ICLRIoCompletionManagerVtbl, OnComplete))     \
  X(sizeof(IIocmHostIoVtbl))                               \
  X(offsetof(IIocmHostIo2Vtbl, SetCompletionModes))        \
  X(sizeof(IIocmPumpVtbl))

#ifdef __cplusplus
extern "C" {
#endif
/// Writes the values of IOCM_BOTH_SIDES, as C computes them, into out[0..n).
/// Returns how many there are.
size_t iocm_c_side_values(int64_t* out, size_t n);
/// Calls p->lpVtbl->OnComplete(p, error, bytes, overlapped) from C, then
/// AddRef and Release; returns OnComplete's HRESULT.
IOCM_HOSTING HRESULT iocm_c_side_on_complete(IOCM_HOSTING ICLRIoCompletionManager* p,
                                             IOCM_HOSTING DWORD error, IOCM_HOSTING DWORD bytes,
                                             void* overlapped);
#ifdef __cplusplus
}
#endif
