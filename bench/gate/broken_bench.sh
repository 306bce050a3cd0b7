#!/bin/sh
# Stands in for a Google Benchmark program in the perf gate's broken-input
# test: it lists one benchmark, then writes results that are not JSON.
for a in "$@"; do
  case $a in
    --benchmark_list_tests) echo queue/spsc_single/iocm/manual_time ;;
    --benchmark_out=*) echo '{"benchmarks": [' >"${a#*=}" ;;
  esac
done
