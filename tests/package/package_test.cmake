# Configures, builds and installs iocm from a fresh build tree, configured
# once as a packager would (the library alone: no tests, no benchmarks), into
# a scratch prefix. Then builds and runs separate host projects against that
# prefix: find_package(iocm) with iocm::iocm; find_package(iocm) with only
# iocm::queue, the header-only target, which must bring its include
# directory; and pkg-config alone.
# Run by ctest with -DSOURCE_DIR, -DWORK_DIR, -DGENERATOR, -DCXX.
file(REMOVE_RECURSE "${WORK_DIR}")
set(build "${WORK_DIR}/build")
set(prefix "${WORK_DIR}/prefix")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${build}" -G "${GENERATOR}" -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_BUILD_TYPE=Release -DIOCM_BUILD_TESTS=OFF -DIOCM_BUILD_BENCH=OFF -DIOCM_WERROR=ON)
run(${CMAKE_COMMAND} --build "${build}" --parallel 2)
run(${CMAKE_COMMAND} --install "${build}" --prefix "${prefix}")
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

# 2. CMake: find_package(iocm) -> iocm::queue alone.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/queue_host" -B "${WORK_DIR}/queue-host"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/queue-host")
run("${WORK_DIR}/queue-host/queue_host")

# 3. pkg-config: a static link needs --static for liburing.
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
execute_process(COMMAND pkg-config --cflags --libs --static iocm OUTPUT_VARIABLE flags
                RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not know iocm")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(c++ "${SOURCE_DIR}/tests/package/host/main.cpp" -o "${WORK_DIR}/pc-host" ${flags})
run("${WORK_DIR}/pc-host")
