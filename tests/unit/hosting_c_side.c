// The C side of hosting_abi_test: the hosting headers compiled as C11.
#include "hosting_c_side.h"

size_t iocm_c_side_values(int64_t* out, size_t n) {
  size_t i = 0;
#define IOCM_C_VALUE(expression)             \
  if (i < n) out[i] = (int64_t)(expression); \
  ++i;
  IOCM_BOTH_SIDES(IOCM_C_VALUE)
#undef IOCM_C_VALUE
  return i;
}

HRESULT iocm_c_side_on_complete(ICLRIoCompletionManager* p, DWORD error, DWORD bytes,
                                void* overlapped) {
  HRESULT hr = p->lpVtbl->OnComplete(p, error, bytes, overlapped);
  p->lpVtbl->AddRef(p);
  p->lpVtbl->Release(p);
  return hr;
}
