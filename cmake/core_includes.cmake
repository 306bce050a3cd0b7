# The engine core includes no operating-system header: only the C++
# standard library (names without a ".h" and without a directory) and its
# own or the public headers, in quotes. Platform headers are kept out by the
# build (core's include path has no platform directory); this catches the
# system ones the compiler would find anyway (<liburing.h>, <sys/epoll.h>).
# Run by ctest with -DCORE_DIR=<core/src>.
file(GLOB sources "${CORE_DIR}/*.h" "${CORE_DIR}/*.cpp")
list(LENGTH sources count)
if(count LESS 10)
  message(FATAL_ERROR "only ${count} files under ${CORE_DIR}: the scan is blind")
endif()
set(problems "")
foreach(f IN LISTS sources)
  file(STRINGS "${f}" includes REGEX "^[ \t]*#[ \t]*include[ \t]*<")
  foreach(line IN LISTS includes)
    if(NOT line MATCHES "^[ \t]*#[ \t]*include[ \t]*<[a-z_]+>")
      string(APPEND problems "  ${f}: ${line}\n")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "core/src includes what is not the C++ standard library:\n${problems}")
endif()
message(STATUS "${count} core files include only the standard library and their own headers")
