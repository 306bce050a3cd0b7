# The fuzz harness's deterministic mode is deterministic: each pumped seed of
# the corpus is run in two processes, which must print the same trace (every
# answer and every completion, in order; api_fuzz.cpp, run_trace). And the
# backends agree: a program run on io_uring (pumped_*_uring) traces as the
# same program on epoll (pumped_*_epoll).
#   cmake -DFUZZER=<api_fuzz> -DCORPUS=<dir> -P replay.cmake
file(GLOB seeds "${CORPUS}/pumped_*")
list(LENGTH seeds count)
if(count LESS 3)
  message(FATAL_ERROR "expected at least 3 pumped seeds in ${CORPUS}, found ${count}")
endif()
set(ENV{IOCM_FUZZ_TRACE} 1)

# The trace of `seed` in a process of its own, in ${out_var}.
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
endfunction()

foreach(seed IN LISTS seeds)
  get_filename_component(name ${seed} NAME)
  trace_of(${seed} first)
  trace_of(${seed} second)
  if(NOT first STREQUAL second)
    message(FATAL_ERROR "${name} traced differently in two runs: ${first}, ${second}")
  endif()
  set(trace_${name} "${first}")
  message(STATUS "${name}: ${first}, twice")
endforeach()

set(pairs 0)
foreach(seed IN LISTS seeds)
  get_filename_component(name ${seed} NAME)
  if(name MATCHES "^(.*)_uring$")
    set(other "${CMAKE_MATCH_1}_epoll")
    if(DEFINED trace_${other})
      if(NOT trace_${name} STREQUAL trace_${other})
        message(FATAL_ERROR "${name} (${trace_${name}}) and ${other} (${trace_${other}}) "
                            "differ: the backends answered the same program differently")
      endif()
      math(EXPR pairs "${pairs} + 1")
    endif()
  endif()
endforeach()
if(pairs EQUAL 0)
  message(FATAL_ERROR "no pumped_*_uring seed has a pumped_*_epoll twin")
endif()
message(STATUS "${pairs} programs trace alike on io_uring and epoll")
