# Installs the built tree into a scratch prefix, then builds and runs a
# separate host project against it: once with find_package(iocm), once with
# pkg-config alone. Run by ctest with -DBUILD_DIR, -DSOURCE_DIR, -DWORK_DIR.
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/iocm/host_io.h include/iocm/engine.h include/iocm/version.h include/iocm/mpmc_queue.h
          lib/libiocm.a lib/cmake/iocm/iocmConfig.cmake lib/pkgconfig/iocm.pc)
  if(NOT EXISTS "${prefix}/${f}")
    file(GLOB_RECURSE found RELATIVE "${prefix}" "${prefix}/*")
    message(FATAL_ERROR "${f} was not installed; installed: ${found}")
  endif()
endforeach()

# 1. CMake: find_package(iocm) -> iocm::iocm.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/host" -B "${WORK_DIR}/cmake-host"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/cmake-host")
run("${WORK_DIR}/cmake-host/host")

# 2. pkg-config: a static link needs --static for liburing.
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
execute_process(COMMAND pkg-config --cflags --libs --static iocm OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know iocm")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ "${SOURCE_DIR}/tests/package/host/main.cpp" -o "${WORK_DIR}/pc-host" ${flags})
run("${WORK_DIR}/pc-host")
