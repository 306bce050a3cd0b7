"""Runs Google Benchmark programs: the one runner iocm-bench (bench/cli/iocm_bench.py)
and scripts/perf-gate share. What each does with a failure is its own.

  list_benchmarks(program, name_filter)   the names a program has
  exact_filter(names)                     a --benchmark_filter for exactly those names
  run(program, name_filter, repetitions, out_json, log, ...)
                                          one run, results as JSON; the exit status
  load(out_json)                          the results a run wrote
"""
import json
import re
import subprocess
import threading


def list_benchmarks(program, name_filter=None):
    """(exit status, names) of `program --benchmark_list_tests`, only the names that
    match name_filter (a Google Benchmark filter: a POSIX extended regex) if given."""
    cmd = [program, "--benchmark_list_tests"]
    if name_filter is not None:
        cmd.append(f"--benchmark_filter={name_filter}")
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    return p.returncode, p.stdout.split()


def exact_filter(names):
    """A --benchmark_filter that matches exactly these benchmark names."""
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def run(program, name_filter, repetitions, out_json, log, extra_args=(), on_line=None,
        timeout=None):
    """Runs the benchmarks of program that match name_filter, each `repetitions` times
    in a random interleaved order, with the results in Google Benchmark's JSON format
    in out_json. Appends the command and all it prints to log; on_line, when given,
    sees each line of that output as it comes. Returns the exit status. Past timeout
    seconds (None: no limit) the program is killed and subprocess.TimeoutExpired
    raised; a program that cannot be started raises OSError."""
    cmd = [program, f"--benchmark_filter={name_filter}", f"--benchmark_repetitions={repetitions}",
           "--benchmark_enable_random_interleaving=true", f"--benchmark_out={out_json}",
           "--benchmark_out_format=json", *extra_args]
    with open(log, "a") as logf:
        logf.write("$ " + " ".join(cmd) + "\n")
        logf.flush()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace")
        expired = threading.Event()

        def kill():
            expired.set()
            p.kill()

        timer = threading.Timer(timeout, kill) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            for line in p.stdout:
                logf.write(line)
                if on_line is not None:
                    on_line(line)
            p.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if p.poll() is None:  # on_line raised: do not leave the program running
                p.kill()
                p.wait()
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, timeout)
    return p.returncode


def load(out_json):
    """The results a run wrote to out_json. Raises OSError when there are none and
    ValueError (json.JSONDecodeError) when they are not JSON."""
    with open(out_json) as f:
        return json.load(f)
