// iocm/win32_errors.h — the one errno -> Win32 table iocm reports through
// OnComplete. The table itself, with the reason for each entry, is in
// docs/ENGINE.md; tests check it entry by entry.
#pragma once

#include <cstdint>

namespace iocm {

/// The Win32 error code for a Linux errno value (positive, as in errno).
/// 0 maps to ERROR_SUCCESS; a value the table does not list maps to
/// ERROR_GEN_FAILURE (31). Context-dependent results (end of file, a socket's
/// orderly close) are decided by the operation, not here. Thread-safe.
std::uint32_t win32_from_errno(int errno_value) noexcept;

}  // namespace iocm
