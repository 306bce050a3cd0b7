# Configures, builds and installs iocm from a fresh build tree, configured
# once as a packager would (the library alone: no tests, no benchmarks), into
# a scratch prefix. Checks what libiocm.so exports (the C entry points and
# the C++ face, nothing of iocm::detail) and its SONAME. Then builds and runs
# separate host projects against that prefix, each against the shared and
# the static library: find_package(iocm) with iocm::iocm and
# iocm::iocm_static; pkg-config with iocm and iocm-static; and
# find_package(iocm) with only iocm::queue, the header-only target, which
# must bring its include directory; and the C example host, built with cc.
# Run by ctest with -DSOURCE_DIR, -DWORK_DIR, -DGENERATOR, -DCXX, -DNM,
# -DREADELF.
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
          lib/libiocm.a lib/libiocm.so lib/libiocm.so.0 lib/cmake/iocm/iocmConfig.cmake
          lib/pkgconfig/iocm.pc lib/pkgconfig/iocm-static.pc)
  if(NOT EXISTS "${prefix}/${f}")
    file(GLOB_RECURSE found RELATIVE "${prefix}" "${prefix}/*")
    message(FATAL_ERROR "${f} was not installed; installed: ${found}")
  endif()
endforeach()

# What the shared library exports: the C entry points, iocm::engine's
# members and the functions iocm/engine.h and iocm/win32_errors.h declare,
# each in version node IOCM_0; nothing else.
execute_process(COMMAND ${NM} -D --defined-only -C "${prefix}/lib/libiocm.so" OUTPUT_VARIABLE symbols
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT symbols MATCHES "iocm_create_host_io_completion_manager@@IOCM_0")
  message(FATAL_ERROR "nm -D finds no iocm_create_host_io_completion_manager@@IOCM_0 in "
                      "libiocm.so (${rc}): the scan is blind\n${symbols}")
endif()
string(REGEX REPLACE "\n$" "" symbols "${symbols}")
string(REPLACE "\n" ";" symbols "${symbols}")
set(allowed "^[0-9a-f]+ A IOCM_0$"
            "^[0-9a-f]+ T iocm_[a-z_]+@@IOCM_0$"
            "^[0-9a-f]+ T iocm::engine::~?[a-z_]+(\\[abi:cxx11\\])?[(].*@@IOCM_0$"
            "^[0-9a-f]+ T iocm::(hresult_category|prepare_overlapped|win32_from_errno)[(][^)]*[)]@@IOCM_0$")
set(exported_count 0)
foreach(line IN LISTS symbols)
  set(ok FALSE)
  foreach(pattern IN LISTS allowed)
    if(line MATCHES "${pattern}")
      set(ok TRUE)
    endif()
  endforeach()
  if(NOT ok)
    string(APPEND unexpected "  ${line}\n")
  endif()
  math(EXPR exported_count "${exported_count} + 1")
endforeach()
if(unexpected)
  message(FATAL_ERROR "libiocm.so exports what its ABI does not name (cmake/iocm.map):\n${unexpected}")
endif()
message(STATUS "libiocm.so exports ${exported_count} symbols, all of the ABI")

# NEEDED and SONAME entries of an ELF file.
function(dynamic_entries file out_var)
  execute_process(COMMAND ${READELF} -d "${file}" OUTPUT_VARIABLE d RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${READELF} -d ${file} failed (${rc})")
  endif()
  string(REGEX MATCHALL "[(](NEEDED|SONAME)[)][^\n]*" found "${d}")
  set(${out_var} "${found}" PARENT_SCOPE)
endfunction()
dynamic_entries("${prefix}/lib/libiocm.so" entries)
if(NOT entries MATCHES "SONAME[^;]*\\[libiocm[.]so[.]0\\]")
  message(FATAL_ERROR "libiocm.so has no SONAME libiocm.so.0: ${entries}")
endif()
# A host linked against the shared library needs libiocm.so.0; one linked
# against the static library does not.
function(expect_linkage program shared)
  dynamic_entries("${program}" entries)
  if(shared AND NOT entries MATCHES "NEEDED[^;]*libiocm[.]so[.]0")
    message(FATAL_ERROR "${program} does not load libiocm.so.0: ${entries}")
  elseif(NOT shared AND entries MATCHES "libiocm")
    message(FATAL_ERROR "${program} was to link libiocm statically: ${entries}")
  endif()
endfunction()

# 1. CMake: find_package(iocm) -> iocm::iocm (shared) and iocm::iocm_static.
foreach(target iocm iocm_static)
  set(dir "${WORK_DIR}/cmake-host-${target}")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/host" -B "${dir}"
      -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DIOCM_TARGET=iocm::${target})
  run(${CMAKE_COMMAND} --build "${dir}")
  run("${dir}/host")
  if(target STREQUAL "iocm")
    expect_linkage("${dir}/host" TRUE)
  else()
    expect_linkage("${dir}/host" FALSE)
  endif()
endforeach()

# 2. CMake: find_package(iocm) -> iocm::queue alone.
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/tests/package/queue_host" -B "${WORK_DIR}/queue-host"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/queue-host")
run("${WORK_DIR}/queue-host/queue_host")

# 3. pkg-config: iocm (shared; the host says where to find it at run time)
# and iocm-static.
set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
foreach(package iocm iocm-static)
  execute_process(COMMAND pkg-config --cflags --libs ${package} OUTPUT_VARIABLE flags
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not know ${package}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(program "${WORK_DIR}/pc-host-${package}")
  if(package STREQUAL "iocm")
    run(c++ -std=c++20 "${SOURCE_DIR}/tests/package/host/main.cpp" -o "${program}" ${flags}
        "-Wl,-rpath,${prefix}/lib")
    expect_linkage("${program}" TRUE)
  else()
    run(c++ -std=c++20 "${SOURCE_DIR}/tests/package/host/main.cpp" -o "${program}" ${flags})
    expect_linkage("${program}" FALSE)
  endif()
  run("${program}")
endforeach()

# 4. A C host: examples/c_host.c compiled with cc as C11, warnings as
# errors, against the installed headers (their C face) and libiocm.so;
# it reads, posts and closes.
execute_process(COMMAND pkg-config --cflags --libs iocm OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(flags UNIX_COMMAND "${flags}")
set(program "${WORK_DIR}/c-host")
run(cc -std=c11 -Wall -Wextra -Wpedantic -Werror "${SOURCE_DIR}/examples/c_host.c" -o "${program}" ${flags}
    -pthread "-Wl,-rpath,${prefix}/lib")
expect_linkage("${program}" TRUE)
run("${program}" 32)
