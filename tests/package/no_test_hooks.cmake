# What a host gets holds no test hook. The public headers (core/include as
# installed, and the generated ones) never name IOCM_PERF_GATE_SLOWDOWN; the
# library hosts link defines no use_syscalls (the fault tests' seam lives in
# iocm_fault_seams only). The same scans are shown to see what they look
# for: the seams library must define use_syscalls, and the headers scanned
# must include the queue's lane.
# Run by ctest with -DPUBLIC_HEADERS=<dir> -DGENERATED_HEADERS=<dir>
# -DLIBRARY=<libiocm.a> -DSEAMS_LIBRARY=<libiocm_fault_seams.a> -DNM=<nm>.
set(problems "")

file(GLOB_RECURSE headers "${PUBLIC_HEADERS}/*" "${GENERATED_HEADERS}/*")
list(FILTER headers INCLUDE REGEX "/iocm/")
if(NOT headers MATCHES "/iocm/detail/lane\\.h")
  message(FATAL_ERROR "the public headers were not found under ${PUBLIC_HEADERS}: ${headers}")
endif()
list(LENGTH headers header_count)
foreach(h IN LISTS headers)
  file(STRINGS "${h}" hits REGEX "IOCM_PERF_GATE_SLOWDOWN")
  if(hits)
    string(APPEND problems "${h} names IOCM_PERF_GATE_SLOWDOWN: ${hits}\n")
  endif()
endforeach()

# The symbols a library defines whose name contains use_syscalls.
function(seams_in library out_var)
  execute_process(COMMAND ${NM} --defined-only -C "${library}" OUTPUT_VARIABLE symbols
                  ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} ${library} failed (${rc}): ${err}")
  endif()
  string(REGEX MATCHALL "[^\n]*use_syscalls[^\n]*" found "${symbols}")
  set(${out_var} "${found}" PARENT_SCOPE)
endfunction()

seams_in("${SEAMS_LIBRARY}" control)
if(NOT control)
  message(FATAL_ERROR "nm finds no use_syscalls in ${SEAMS_LIBRARY}, which has it: the scan is blind")
endif()
seams_in("${LIBRARY}" found)
if(found)
  string(REPLACE ";" "\n  " found "${found}")
  string(APPEND problems "${LIBRARY} defines the fault tests' seam:\n  ${found}\n")
endif()

if(problems)
  message(FATAL_ERROR "test hooks in the product:\n${problems}")
endif()
message(STATUS "${header_count} public headers and ${LIBRARY}: no test hook")
