// The errno -> Win32 table, entry by entry (docs/ENGINE.md lists the same
// table with reasons; a change to one must change the other).
#include <doctest/doctest.h>

#include <cerrno>
#include <initializer_list>

#include "iocm/hosting.h"
#include "iocm/win32_errors.h"

using namespace iocm::hosting;
using iocm::win32_from_errno;

TEST_CASE("every documented errno maps to its Win32 code") {
  struct entry {
    int e;
    DWORD win32;
  };
  const entry table[] = {
      {0, ERROR_SUCCESS},
      {EPERM, ERROR_ACCESS_DENIED},
      {ENOENT, ERROR_FILE_NOT_FOUND},
      {EINTR, ERROR_OPERATION_ABORTED},
      {EIO, ERROR_IO_DEVICE},
      {ENXIO, ERROR_DEV_NOT_EXIST},
      {EBADF, ERROR_INVALID_HANDLE},
      {EAGAIN, ERROR_RETRY},
      {EWOULDBLOCK, ERROR_RETRY},
      {ENOMEM, ERROR_NOT_ENOUGH_MEMORY},
      {EACCES, ERROR_ACCESS_DENIED},
      {EFAULT, ERROR_NOACCESS},
      {EBUSY, ERROR_BUSY},
      {EEXIST, ERROR_ALREADY_EXISTS},
      {ENODEV, ERROR_DEV_NOT_EXIST},
      {ENOTDIR, ERROR_DIRECTORY},
      {EISDIR, ERROR_INVALID_FUNCTION},
      {EINVAL, ERROR_INVALID_PARAMETER},
      {ENFILE, ERROR_TOO_MANY_OPEN_FILES},
      {EMFILE, ERROR_TOO_MANY_OPEN_FILES},
      {EFBIG, ERROR_FILE_TOO_LARGE},
      {ENOSPC, ERROR_DISK_FULL},
      {ESPIPE, ERROR_SEEK},
      {EROFS, ERROR_WRITE_PROTECT},
      {EPIPE, ERROR_BROKEN_PIPE},
      {ENOSYS, ERROR_NOT_SUPPORTED},
      {ENOTSOCK, ERROR_INVALID_HANDLE},
      {EMSGSIZE, ERROR_MORE_DATA},
      {EOPNOTSUPP, ERROR_NOT_SUPPORTED},
      {ENOTSUP, ERROR_NOT_SUPPORTED},
      {EADDRINUSE, ERROR_ADDRESS_ALREADY_ASSOCIATED},
      {ENETUNREACH, ERROR_NETWORK_UNREACHABLE},
      {ECONNABORTED, ERROR_CONNECTION_ABORTED},
      {ECONNRESET, ERROR_NETNAME_DELETED},
      {ENOBUFS, ERROR_NO_SYSTEM_RESOURCES},
      {ENOTCONN, ERROR_CONNECTION_INVALID},
      {ETIMEDOUT, ERROR_SEM_TIMEOUT},
      {ECONNREFUSED, ERROR_CONNECTION_REFUSED},
      {EHOSTUNREACH, ERROR_HOST_UNREACHABLE},
      {EDQUOT, ERROR_DISK_QUOTA_EXCEEDED},
      {ECANCELED, ERROR_OPERATION_ABORTED},
  };
  for (const entry& x : table) {
    CAPTURE(x.e);
    CHECK(win32_from_errno(x.e) == x.win32);
  }
}

TEST_CASE("the values DESIGN.md names, with their numbers") {
  CHECK(win32_from_errno(ECANCELED) == 995);
  CHECK(win32_from_errno(EBADF) == 6);
  CHECK(win32_from_errno(ECONNRESET) == 64);
  CHECK(ERROR_HANDLE_EOF == 38);
}

TEST_CASE("an errno the table does not list is ERROR_GEN_FAILURE, never success") {
  for (int e : {ELOOP, ENAMETOOLONG, EPROTO, 4095, -1}) {
    CAPTURE(e);
    CHECK(win32_from_errno(e) == ERROR_GEN_FAILURE);
  }
}
