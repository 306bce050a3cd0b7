#!/bin/sh
# Stands in for a Google Benchmark program in the perf gate's test of
# programs that settle in different rounds. It lists one benchmark, $NAME
# below; run, it writes a time for it: always the same one when installed
# as the queue program (a verdict after the first rounds), and one that
# swings by a factor of 4 at random as the engine program (no verdict, so
# the gate keeps adding rounds for it alone).
case $0 in
  *engine*) NAME=engine/nop/iocm ;;
  *) NAME=queue/single_thread/iocm ;;
esac
for a in "$@"; do
  case $a in
    --benchmark_list_tests) echo "$NAME" ;;
    --benchmark_out=*)
      case $0 in
        *engine*) t=$(od -An -N1 -tu1 /dev/urandom | tr -d ' '); t=$((100 + t * 300 / 255)) ;;
        *) t=100 ;;
      esac
      printf '{"benchmarks": [{"name": "%s", "run_type": "iteration", "real_time": %s, "time_unit": "ns"}]}\n' \
        "$NAME" "$t" >"${a#*=}" ;;
  esac
done
