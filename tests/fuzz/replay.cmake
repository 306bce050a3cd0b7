# The fuzz harness's deterministic mode is deterministic, and the backends
# agree in it (api_fuzz.cpp, run_trace):
# - CHECK=repeat: each pumped seed of the corpus is run in two processes,
#   which must print the same trace (every answer and every completion, in
#   order);
# - CHECK=backends: a program run on io_uring (pumped_*_uring) traces as the
#   same program on epoll (pumped_*_epoll). Where io_uring cannot be set up
#   the harness runs the _uring seeds on epoll and says so: then this prints
#   "SKIPPED: io_uring cannot be set up here", which CTest reports as a skip
#   (SKIP_REGULAR_EXPRESSION).
#   cmake -DFUZZER=<api_fuzz> -DCORPUS=<dir> -DCHECK=repeat|backends -P replay.cmake
file(GLOB seeds "${CORPUS}/pumped_*")
list(LENGTH seeds count)
if(count LESS 3)
  message(FATAL_ERROR "expected at least 3 pumped seeds in ${CORPUS}, found ${count}")
endif()
set(ENV{IOCM_FUZZ_TRACE} 1)

# The trace of `seed` in a process of its own, in ${out_var}; whether the
# harness ran io_uring's inputs on epoll, in ${out_var}_on_epoll.
function(trace_of seed out_var)
  execute_process(COMMAND ${FUZZER} ${seed} OUTPUT_VARIABLE out ERROR_VARIABLE err
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${FUZZER} ${seed} failed (${rc}):\n${err}")
  endif()
  string(REGEX MATCHALL "trace [0-9a-f]+" traces "${out}")
  list(REMOVE_DUPLICATES traces)  # libFuzzer may run an input more than once
  list(LENGTH traces n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "${seed}: expected one trace, got '${traces}':\n${out}")
  endif()
  set(${out_var} "${traces}" PARENT_SCOPE)
  string(REGEX MATCH "io_uring cannot be set up here[^\n]*" on_epoll "${err}")
  set(${out_var}_on_epoll "${on_epoll}" PARENT_SCOPE)
endfunction()

if(CHECK STREQUAL "repeat")
  foreach(seed IN LISTS seeds)
    get_filename_component(name ${seed} NAME)
    trace_of(${seed} first)
    trace_of(${seed} second)
    if(NOT first STREQUAL second)
      message(FATAL_ERROR "${name} traced differently in two runs: ${first}, ${second}")
    endif()
    message(STATUS "${name}: ${first}, twice")
  endforeach()
elseif(CHECK STREQUAL "backends")
  set(pairs 0)
  foreach(seed IN LISTS seeds)
    get_filename_component(name ${seed} NAME)
    if(NOT name MATCHES "^(.*)_uring$")
      continue()
    endif()
    set(twin "${CMAKE_MATCH_1}_epoll")
    set(other "${CORPUS}/${twin}")
    if(NOT EXISTS "${other}")
      continue()
    endif()
    trace_of(${seed} uring)
    if(uring_on_epoll)
      message(STATUS "SKIPPED: ${uring_on_epoll}")
      return()
    endif()
    trace_of(${other} epoll)
    if(NOT uring STREQUAL epoll)
      message(FATAL_ERROR "${name} (${uring}) and ${twin} (${epoll}) "
                          "differ: the backends answered the same program differently")
    endif()
    message(STATUS "${name}: ${uring}, as on epoll")
    math(EXPR pairs "${pairs} + 1")
  endforeach()
  if(pairs EQUAL 0)
    message(FATAL_ERROR "no pumped_*_uring seed has a pumped_*_epoll twin")
  endif()
  message(STATUS "${pairs} programs trace alike on io_uring and epoll")
else()
  message(FATAL_ERROR "CHECK must be repeat or backends, not '${CHECK}'")
endif()
