// The errno -> Win32 table (docs/ENGINE.md lists it with reasons).
#include "iocm/win32_errors.h"

#include <cerrno>

#include "iocm/hosting.h"

namespace iocm {

std::uint32_t win32_from_errno(int e) noexcept {
  using namespace hosting;
  switch (e) {
    case 0:
      return ERROR_SUCCESS;
    case EPERM:
      return ERROR_ACCESS_DENIED;
    case ENOENT:
      return ERROR_FILE_NOT_FOUND;
    case EINTR:
      return ERROR_OPERATION_ABORTED;
    case EIO:
      return ERROR_IO_DEVICE;
    case ENXIO:
      return ERROR_DEV_NOT_EXIST;
    case EBADF:
      return ERROR_INVALID_HANDLE;
    case EAGAIN:
      return ERROR_RETRY;  // EWOULDBLOCK is the same value on Linux
    case ENOMEM:
      return ERROR_NOT_ENOUGH_MEMORY;
    case EACCES:
      return ERROR_ACCESS_DENIED;
    case EFAULT:
      return ERROR_NOACCESS;
    case EBUSY:
      return ERROR_BUSY;
    case EEXIST:
      return ERROR_ALREADY_EXISTS;
    case ENODEV:
      return ERROR_DEV_NOT_EXIST;
    case ENOTDIR:
      return ERROR_DIRECTORY;
    case EISDIR:
      return ERROR_INVALID_FUNCTION;
    case EINVAL:
      return ERROR_INVALID_PARAMETER;
    case ENFILE:
      return ERROR_TOO_MANY_OPEN_FILES;
    case EMFILE:
      return ERROR_TOO_MANY_OPEN_FILES;
    case EFBIG:
      return ERROR_FILE_TOO_LARGE;
    case ENOSPC:
      return ERROR_DISK_FULL;
    case ESPIPE:
      return ERROR_SEEK;
    case EROFS:
      return ERROR_WRITE_PROTECT;
    case EPIPE:
      return ERROR_BROKEN_PIPE;
    case ENOSYS:
      return ERROR_NOT_SUPPORTED;
    case ENOTSOCK:
      return ERROR_INVALID_HANDLE;
    case EMSGSIZE:
      return ERROR_MORE_DATA;
    case EOPNOTSUPP:
      return ERROR_NOT_SUPPORTED;  // ENOTSUP is the same value on Linux
    case EADDRINUSE:
      return ERROR_ADDRESS_ALREADY_ASSOCIATED;
    case ENETUNREACH:
      return ERROR_NETWORK_UNREACHABLE;
    case ECONNABORTED:
      return ERROR_CONNECTION_ABORTED;
    case ECONNRESET:
      return ERROR_NETNAME_DELETED;
    case ENOBUFS:
      return ERROR_NO_SYSTEM_RESOURCES;
    case ENOTCONN:
      return ERROR_CONNECTION_INVALID;
    case ETIMEDOUT:
      return ERROR_SEM_TIMEOUT;
    case ECONNREFUSED:
      return ERROR_CONNECTION_REFUSED;
    case EHOSTUNREACH:
      return ERROR_HOST_UNREACHABLE;
    case EDQUOT:
      return ERROR_DISK_QUOTA_EXCEEDED;
    case ECANCELED:
      return ERROR_OPERATION_ABORTED;
    default:
      return ERROR_GEN_FAILURE;
  }
}

}  // namespace iocm
