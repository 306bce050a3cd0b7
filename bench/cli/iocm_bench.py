#!/usr/bin/env python3
"""iocm-bench: iocm against what a host would use instead, on the same work, in one run.

usage: iocm-bench [SUBCOMMAND ...] [--quick | --full] [--repetitions N] [--json]
                  [--out DIR] [--filter REGEX] [--no-plots]
       iocm-bench topology [topology options; see iocm-bench topology --help]
       iocm-bench report --from DIR [--out DIR2] [--no-plots]

Subcommands (several may be given; default: all):
  queue     iocm's MPMC queue against moodycamel, atomic_queue, xenium, Boost.Lockfree,
            TBB and a mutex ring (iocm-queue-bench).
  engine    nop and Post dispatch through the engine against Boost.Asio, libuv and a
            .NET-style queue-fed worker; Post -> OnComplete latency.
  file      4 KiB random reads from a page-cached file at queue depth 1, 16, 64: iocm
            (io_uring and epoll) against a plain liburing loop, Boost.Asio (io_uring),
            libuv, a .NET-style thread pool running pread, pread alone, and fio
            --ioengine=io_uring on the same file size, block size and depth.
  net       64-byte TCP echo over loopback with 1, 16, 64 connections against liburing,
            Boost.Asio (epoll and io_uring), libuv and a .NET-style engine (an epoll
            thread feeding a worker through a queue); then wrk against iocm-plaintext
            and against nginx (same cores, same wrk), with and without pipelining.
  topology  where an engine's threads and memory go on this machine.
  all       every one of the above.
  report    runs nothing: writes report.md, report.html, summary.json and plots/ again
            from the <suite>.json files of the results directory --from DIR (into
            --out DIR2, default DIR itself, with those files copied there).

Options:
  --quick          one round, short runs (about 2 minutes for `all` on 2 cores)
  --full           five rounds and longer wrk runs (default: three rounds)
  --repetitions N  rounds of every benchmark, in random interleaved order
  --json           print the summary as JSON on stdout instead of tables
  --out DIR        where results go (default: results/<date>-<commit>/)
  --filter REGEX   only benchmarks whose <suite>/<scenario>/<impl> name matches
  --no-plots       skip the SVG plots
  --server-cpus L  CPUs for the servers in `net` (default: the first half; wrk gets the rest)

Writes to the results directory: <suite>.json (Google Benchmark's JSON format, with fio
and wrk results as entries of the same shape), report.md (tables, ratios, targets),
report.html (the same tables and the figures on one page that needs no network),
summary.json, plots/*.svg (gnuplot), and each tool's log. A progress bar goes to
stderr when it is a terminal. Exit status: 0; 1 when a benchmark reported an error
(lost or duplicated records) or a tool failed; 2 for a bad argument.
"""
import datetime
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
# The build tree: configured into <build>/bench, this script finds the
# programs it runs by their place in that tree (tool()).
BUILD_DIR = os.path.dirname(HERE)
SOURCE_DIR = "@PROJECT_SOURCE_DIR@"
sys.path.insert(0, os.path.join(SOURCE_DIR, "scripts"))
import bench_table  # noqa: E402
import gbench  # noqa: E402

SUBCOMMANDS = ("queue", "engine", "file", "net", "topology")
# The results files a run writes, one per suite, in the report's order.
SUITE_FILES = ("queue", "engine", "file", "net")
# Queue depths of engine/file_randread_qd<N>, for fio: bench/CMakeLists.txt
# sets them, for the benchmarks too (bench_io.h). The plots take the depths
# and widths from the results.
FILE_DEPTHS = tuple(int(n) for n in "@IOCM_BENCH_FILE_DEPTHS@".split(";"))
MODES = {  # rounds, wrk seconds, fio seconds
    "quick": (1, 2, 1),
    "default": (3, 4, 2),
    "full": (5, 8, 3),
}


def fail(message, status=2):
    print(f"iocm-bench: {message}", file=sys.stderr)
    sys.exit(status)


def tool(relative):
    """A program of the build tree, named by its path there (bench/iocm-engine-bench)."""
    path = os.path.join(BUILD_DIR, relative)
    if not os.access(path, os.X_OK):
        fail(f"{path} is missing; build the release preset first", 1)
    return path


class Progress:
    """One bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self):
        self.live = sys.stderr.isatty()
        self.step = ""
        self.total = 1
        self.done = 0
        self.started = time.monotonic()

    def begin(self, step, total):
        self.step, self.total, self.done = step, max(total, 1), 0
        self.draw("")

    def advance(self, what=""):
        self.done = min(self.done + 1, self.total)
        self.draw(what)

    def draw(self, what):
        if not self.live:
            return
        width = 28
        filled = int(width * self.done / self.total)
        elapsed = int(time.monotonic() - self.started)
        line = (f"\r{self.step:<7} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.done}/{self.total} {elapsed // 60}:{elapsed % 60:02d} {what}")
        cols = shutil.get_terminal_size((100, 20)).columns
        sys.stderr.write(line[: cols - 1].ljust(cols - 1))
        sys.stderr.flush()

    def end(self):
        if self.live:
            sys.stderr.write("\r" + " " * (shutil.get_terminal_size((100, 20)).columns - 1) + "\r")
            sys.stderr.flush()


def run_gbench(binary, pattern, user_filter, rounds, out_json, log, progress, step):
    """Runs the benchmarks of one Google Benchmark program whose names match
    pattern (a POSIX extended regex: what Google Benchmark uses here) and
    user_filter (a Python regex); returns its parsed JSON, or None when no
    name matches."""
    _, listed = gbench.list_benchmarks(binary, pattern)
    names = [n for n in listed if re.search(user_filter, n)]
    if not names:
        return None
    name_filter = pattern if len(names) == len(listed) else gbench.exact_filter(names)
    progress.begin(step, len(names) * rounds)

    def advance(line):
        m = bench_table.NAME.match(line)
        if m and not line.split()[0].endswith(("_mean", "_median", "_stddev", "_cv")):
            progress.advance(m.group(0))

    status = gbench.run(binary, name_filter, rounds, out_json, log,
                        extra_args=["--benchmark_counters_tabular=true"], on_line=advance)
    progress.end()
    try:
        return gbench.load(out_json)
    except (OSError, json.JSONDecodeError):
        return {"benchmarks": [], "context": {},
                "iocm_bench_error": f"{os.path.basename(binary)} exited {status}"}


def entry(name, rep, items_per_second=None, **extra):
    """A benchmark entry shaped like Google Benchmark's."""
    e = {"name": name, "run_name": name, "run_type": "iteration", "repetition_index": rep,
         "repetitions": 0, "iterations": 1, "real_time": 0, "cpu_time": 0, "time_unit": "ns"}
    if items_per_second is not None:
        e["items_per_second"] = items_per_second
    e.update(extra)
    return e


# --- fio -----------------------------------------------------------------------

def run_fio(depths, rounds, seconds, log, progress, name_filter):
    fio = shutil.which("fio")
    wanted = [d for d in depths if re.search(name_filter, f"engine/file_randread_qd{d}/fio")]
    if not wanted:
        return [], []
    if fio is None:
        return [], ["fio is not installed (scripts/setup --bench installs it)"]
    entries, errors = [], []
    work = tempfile.mkdtemp(prefix="iocm-fio-")
    cpu = str(1 % os.cpu_count())
    progress.begin("fio", len(wanted) * rounds)
    try:
        for rep in range(rounds):
            for qd in random.sample(wanted, len(wanted)):
                cmd = [fio, "--name=randread", "--ioengine=io_uring", "--rw=randread", "--bs=4k",
                       f"--iodepth={qd}", "--size=64M", f"--directory={work}", "--direct=0", "--invalidate=0",
                       "--time_based", f"--runtime={seconds}", "--ramp_time=0.5",
                       f"--cpus_allowed={cpu}", "--randrepeat=1", "--output-format=json"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                with open(log, "a") as logf:
                    logf.write("$ " + " ".join(cmd) + "\n" + r.stdout + r.stderr)
                progress.advance(f"fio qd{qd}")
                try:
                    job = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]
                    iops = job["read"]["iops"]
                    if job.get("error", 0) or iops <= 0:
                        raise ValueError(f"error {job.get('error')}")
                except (ValueError, KeyError, IndexError) as e:
                    errors.append(f"fio qd{qd}: {e}; see {log}")
                    continue
                entries.append(entry(f"engine/file_randread_qd{qd}/fio", rep, iops))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        progress.end()
    return entries, errors


# --- wrk against iocm-plaintext and nginx ---------------------------------------

NGINX_CONF = """worker_processes {workers};
worker_cpu_affinity {affinity};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 65;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{ default_type text/plain; return 200 "Hello, World!"; }}
  }}
}}
"""

PIPELINE_LUA = """init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=10):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def parse_wrk(text):
    """requests/s and latency percentiles (ns) from wrk --latency output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        raise ValueError("no Requests/sec line")
    scale = {"us": 1e3, "ms": 1e6, "s": 1e9}
    pct = {}
    for p, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        pct[int(p)] = float(v) * scale[u]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
    return float(rps.group(1)), pct, errors.group(0) if errors else None


def tree_cpu(pid):
    """(user, system) CPU seconds of process pid and every descendant alive
    now, every thread included (nginx's workers are its master's children)."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        # After the command's closing parenthesis: state, ppid, ..., utime
        # (the 14th field of stat) at index 11, stime at 12.
        procs[int(d)] = (int(fields[1]), int(fields[11]), int(fields[12]))
    tick = os.sysconf("SC_CLK_TCK")
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, _) in procs.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    user = sum(procs[p][1] for p in tree if p in procs) / tick
    system = sum(procs[p][2] for p in tree if p in procs) / tick
    return user, system


def cpu_split(server_cpus):
    n = os.cpu_count() or 1
    if server_cpus:
        server = server_cpus
    else:
        server = "0" if n <= 2 else f"0-{n // 2 - 1}"
    cpus = set()
    for part in server.split(","):
        a, _, b = part.partition("-")
        cpus.update(range(int(a), int(b or a) + 1))
    client = sorted(set(range(n)) - cpus) or sorted(cpus)
    return sorted(cpus), ",".join(map(str, client))


def run_net_servers(rounds, seconds, log, progress, name_filter, server_cpus):
    wrk, nginx = shutil.which("wrk"), shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    servers = [s for s in ("iocm", "iocm_ahead", "iocm_ahead_fixed", "iocm_ahead_all", "nginx")
               if re.search(name_filter, f"net/plaintext/{s}") or
               re.search(name_filter, f"net/plaintext_pipelined/{s}")]
    if not servers:
        return [], []
    missing = [n for n, p in (("wrk", wrk), ("nginx", nginx)) if p is None]
    if missing:
        return [], [f"{' and '.join(missing)} not installed (scripts/setup --bench installs them)"]
    cpus, client_cpus = cpu_split(server_cpus)
    cpu_list = ",".join(map(str, cpus))
    prefix = tempfile.mkdtemp(prefix="iocm-nginx-")
    lua = os.path.join(prefix, "pipeline.lua")
    with open(lua, "w") as f:
        f.write(PIPELINE_LUA)
    modes = [("plaintext", []), ("plaintext_pipelined", ["-s", lua])]
    entries, errors = [], []
    progress.begin("wrk", rounds * len(servers) * len(modes))
    procs = {}
    try:
        ports = {}
        for s in servers:
            ports[s] = free_port()
            if s.startswith("iocm"):
                # iocm_ahead: the same server with every connection receiving
                # ahead (one multishot receive each).
                # iocm_ahead_fixed: and its descriptors registered
                # (IOCM_FIXED_FILES, through the environment); iocm_ahead_all:
                # and every OnComplete on the poller (IOCM_INLINE_ALL).
                cmd = [tool("examples/iocm-plaintext"), "--port", str(ports[s]), "--cpus", cpu_list,
                       "--quiet"] + (["--receive-ahead"] if s.startswith("iocm_ahead") else []) + (
                           ["--inline-all"] if s == "iocm_ahead_all" else [])
            else:
                mask = ["0"] * (max(cpus) + 1)
                for c in cpus:
                    mask[c] = "1"
                with open(os.path.join(prefix, "nginx.conf"), "w") as f:
                    f.write(NGINX_CONF.format(workers=len(cpus), affinity="".join(reversed(mask)),
                                              prefix=prefix, port=ports[s]))
                cmd = [nginx, "-p", prefix, "-c", os.path.join(prefix, "nginx.conf"), "-e",
                       os.path.join(prefix, "error.log")]
            with open(log, "a") as logf:
                logf.write("$ " + " ".join(cmd) + "\n")
                logf.flush()
                # The child keeps its own copy of the descriptor.
                env = dict(os.environ, IOCM_FIXED_FILES="1" if s == "iocm_ahead_fixed" else "0")
                procs[s] = subprocess.Popen(["taskset", "-c", cpu_list] + cmd, env=env,
                                            stdout=subprocess.DEVNULL, stderr=logf)
            if not wait_port(ports[s], procs[s]):
                errors.append(f"{s} did not start listening; see {log}")
                servers = [x for x in servers if x != s]
        for rep in range(rounds):
            for mode, extra in modes:
                for s in random.sample(servers, len(servers)):
                    cmd = ["taskset", "-c", client_cpus, wrk, "-t1", "-c64", f"-d{seconds}s",
                           "--latency"] + extra + [f"http://127.0.0.1:{ports[s]}/"]
                    if extra:
                        cmd += ["--", "16"]
                    before = tree_cpu(procs[s].pid)
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    after = tree_cpu(procs[s].pid)
                    with open(log, "a") as logf:
                        logf.write(f"$ {' '.join(cmd)}   # {s}\n{r.stdout}{r.stderr}")
                    progress.advance(f"{mode} {s}")
                    try:
                        rps, pct, bad = parse_wrk(r.stdout)
                        if bad:
                            raise ValueError(bad)
                    except ValueError as e:
                        errors.append(f"wrk {mode} {s}: {e}; see {log}")
                        continue
                    entries.append(entry(f"net/{mode}/{s}", rep, rps))
                    if mode == "plaintext" and rps > 0:
                        # The server's CPU time per request, all its threads
                        # and processes: what each request costs the kernel
                        # (system) and the server itself (user).
                        requests = rps * seconds
                        user, system = (a - b for a, b in zip(after, before))
                        entries.append(entry(f"net/plaintext_cpu/{s}", rep, None,
                                             cpu_ns=(user + system) * 1e9 / requests,
                                             user_ns=user * 1e9 / requests,
                                             sys_ns=system * 1e9 / requests))
                    if mode == "plaintext" and 99 in pct:
                        # wrk's latency is per request only without pipelining;
                        # every percentile it prints, for the latency figure.
                        entries.append(entry(f"net/plaintext_p99/{s}", rep, None,
                                             p99_ns=pct[99]))
                        entries.append(entry(f"net/plaintext_latency/{s}", rep, None,
                                             p50_ns=pct.get(50, float("nan")),
                                             p75_ns=pct.get(75, float("nan")),
                                             p90_ns=pct.get(90, float("nan")),
                                             p99_ns=pct[99], p999_ns=float("nan"),
                                             max_ns=float("nan")))
    finally:
        for s, p in procs.items():
            status = stop(p)
            if s.startswith("iocm") and status not in (0, None):
                errors.append(f"iocm-plaintext exited {status} on SIGTERM")
        shutil.rmtree(prefix, ignore_errors=True)
        progress.end()
    return entries, errors


# --- plots -----------------------------------------------------------------------
#
# Every figure is drawn by gnuplot from the medians of the <suite>.json
# files, the same numbers report.md and report.html tabulate. iocm is black
# (thick in the line plots, a reference line in the ratio plot), its
# variants (iocm_*) dashed, and every other implementation has a colour no
# other series of the same figure has.

# The figures gnuplot could not draw in this process (see the log).
PLOT_FAILURES = []


def gnuplot(script, out_dir, name, log, size=(800, 480)):
    path = os.path.join(out_dir, "plots", name + ".svg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    full = (f'set terminal svg size {size[0]},{size[1]} dynamic font "sans,11" noenhanced\n'
            f'set encoding utf8\nset output "{path}"\n' + script + "unset output\n")
    with open(os.path.join(out_dir, "plots", name + ".gp"), "w") as f:
        f.write(full)
    r = subprocess.run(["gnuplot"], input=full, capture_output=True, text=True)
    if r.returncode != 0:
        with open(log, "a") as logf:
            logf.write(f"gnuplot {name}: exit status {r.returncode}\n{r.stderr}\n")
        PLOT_FAILURES.append(name)
        return None
    return os.path.relpath(path, out_dir)


def medians(runs):
    return {k: statistics.median(v) for k, v in runs.items()}


IOCM_COLOUR = "#000000"
# Eighteen colours apart from black and from each other on white (mostly
# Okabe-Ito's and Tol's), in an order where each is far from the ones just
# before it. The implementations that several figures share keep one
# colour each (liburing_raw is the same blue everywhere); the others (the
# queue figure's) take, in the order they are drawn, the next colour nobody
# in the figure has.
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#332288",
           "#999933", "#882255", "#ee3377", "#44aa99", "#aa4499", "#8c564b", "#888888",
           "#117733", "#ddaa33", "#6699cc", "#e31a1c"]
# Every engine-side implementation has its colour here, so that it looks the
# same in every figure; two share one only when no figure shows both
# (libuv and iocm_parked, pread and iocm_ahead_all).
FIXED_COLOURS = {"liburing_raw": 0, "libuv": 1, "asio": 2, "dotnet_style": 3, "nginx": 4,
                 "iocm_epoll": 5, "iocm_pumped": 6, "asio_uring": 7, "fio": 8,
                 "iocm_cont": 9, "iocm_cont_handoff": 10, "iocm_handoff": 11, "pread": 12,
                 "futex_floor": 13, "iocm_ahead_fixed": 14, "iocm_sync": 16, "iocm_ahead": 17,
                 "iocm_parked": 1, "iocm_ahead_all": 12}
# gnuplot's point types, iocm's first: a filled circle.
POINTS = [7, 5, 9, 11, 13, 4, 6, 8, 10, 12, 14, 1, 2, 3]


def colours_for(impls):
    """impl -> "#rrggbb": iocm black, no two others alike (up to len(PALETTE)),
    in the order given."""
    colours = {i: PALETTE[FIXED_COLOURS[i]] for i in impls if i in FIXED_COLOURS}
    free = iter([c for c in PALETTE if c not in colours.values()])
    for impl in impls:
        if impl == "iocm":
            colours[impl] = IOCM_COLOUR
        elif impl not in colours:
            colours[impl] = next(free, "#bbbbbb")
    return colours


def series_style(impl, colour, thick=3.5, thin=2):
    """iocm thick and black; its variants (iocm_*) dashed."""
    style = f'lw {thick}' if impl == "iocm" else f'lw {thin}'
    if impl.startswith("iocm_"):
        style += " dt (8,4)"
    return style + f' lc rgb "{colour}"'


def q(text):
    """A gnuplot string."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + text + '"'


def tic(text):
    """A tic label: a gnuplot string that is also a format, so % is %%."""
    return q(str(text).replace("%", "%%"))


def rounds_note(rounds):
    return f"median of {rounds} round{'s' if rounds != 1 else ''}"


def line_plot(med, suite, prefix, title, ylabel, xlabel, out_dir, name, log, rounds):
    """One line per implementation across <prefix><N> scenarios (x = N, log2)."""
    points = {}
    for (s, scenario, impl), v in med.items():
        n = scenario[len(prefix):]
        if s == suite and scenario.startswith(prefix) and n.isdigit():
            points.setdefault(impl, []).append((int(n), v))
    if not points:
        return None
    xs = sorted({x for pts in points.values() for x, _ in pts})
    # The key in the order of the lines where they end, highest first:
    # a reader finds a line's name at the same height as its end.
    impls = sorted(points, key=lambda i: (-max(points[i])[0], -max(points[i])[1], i))
    colours = colours_for(impls)
    blocks, plots = [], []
    for i, impl in enumerate(impls):
        pts = sorted(points[impl])
        blocks.append("$d%d << EOD\n%s\nEOD\n" % (i, "\n".join(f"{x} {y}" for x, y in pts)))
        pt = POINTS[0] if impl == "iocm" else POINTS[1 + i % (len(POINTS) - 1)]
        plots.append(f'$d{i} using 1:2 with linespoints {series_style(impl, colours[impl])} '
                     f'pt {pt} ps {1.3 if impl == "iocm" else 1.0} title {q(impl)}')
    if "iocm" in impls:  # drawn again last, on top of the others
        i = impls.index("iocm")
        plots.append(f'$d{i} using 1:2 with linespoints {series_style("iocm", IOCM_COLOUR)} '
                     f'pt {POINTS[0]} ps 1.3 notitle')
    script = "".join(blocks) + (
        f'set title {q(f"{title} ({rounds_note(rounds)})")}\n'
        f'set xlabel {q(xlabel + " (log scale)")}\nset ylabel {q(ylabel + " (higher is better)")}\n'
        f'set logscale x 2\nset xtics ({", ".join(str(x) for x in xs)})\n'
        f'set xrange [{xs[0] * 0.8}:{xs[-1] * 1.25}]\nset yrange [0:*]\n'
        'set key outside right top vertical Left reverse samplen 3 spacing 1.15\n'
        'set grid lc rgb "#dddddd"\nset border lc rgb "#444444"\n'
        "plot " + ", ".join(plots) + "\n")
    return gnuplot(script, out_dir, name, log, size=(900, 500))


def log2_ticks(lo, hi):
    """Ticks for a ratio axis on log2: powers of 2 (of 4 when wide) around 1."""
    step = 1 if math.log2(hi / lo) <= 6 else 2
    ticks, e = [], math.floor(math.log2(lo) / step) * step
    while 2.0 ** e <= hi * 1.0001:
        if 2.0 ** e >= lo / 1.0001:
            ticks.append(e)
        e += step
    return [(f"1/{2 ** -e}" if e < 0 else "1\n(iocm)" if e == 0 else str(2 ** e), 2.0 ** e)
            for e in ticks]


def hbar_plot(panels, title, xlabel, out_dir, name, log, ratio=False, shared_rows=False):
    """Horizontal bars, one row per implementation, names beside them and
    each bar's figure at its end. panels: [(title, [(impl, value or None)])].
    ratio: bars from 1 on a log2 axis, with iocm = 1 drawn as a thick black
    line; else bars from 0, one linear scale per panel. shared_rows: every
    panel has the same rows, side by side, named once on the left; else the
    panels are stacked, each naming its own rows."""
    panels = [(t, rows) for t, rows in panels if any(v is not None for _, v in rows)]
    if not panels:
        return None
    impls = []
    for _, rows in panels:
        impls += [i for i, _ in rows if i not in impls]
    colours = colours_for(impls)
    longest = max(len(i) for i in impls)
    # Where each panel goes, in pixels from the top: the figure's title,
    # then per panel its title, its rows, its tick labels.
    row_px, head_px, ticks_px, xlabel_px = 22, 46, 24, 34
    boxes = []
    if shared_rows:
        width = max(1100, 220 * len(panels))  # a panel's tick labels need about 200 px
        top = head_px + 40  # two-line panel titles
        bottom = top + row_px * len(panels[0][1])
        boxes = [(top, bottom)] * len(panels)
        height = bottom + 2 * ticks_px + 28
    else:
        width, y = 900, head_px
        for _, rows in panels:
            y += 24
            boxes.append((y, y + row_px * len(rows)))
            y += row_px * len(rows) + ticks_px + 14
        height = y - 14 + xlabel_px
    left = (longest * 7.2 + 24) / width
    right = 1 - 40 / width
    values = [v for _, rows in panels for _, v in rows if v is not None]
    if ratio:
        lo, hi = min(values + [1.0]), max(values + [1.0])
        xr = (lo / 6, hi * 6)
        ticks = log2_ticks(lo / 2, hi * 2)
    script = [f'set multiplot title {q(title)} font ",13"\n',
              'set border lc rgb "#444444"\nset grid xtics lc rgb "#dddddd"\nunset key\n',
              'set style fill solid 0.85 border lc rgb "#333333"\n']
    if ratio:
        script.append("set logscale x 2\nset xtics (" +
                      ", ".join(f"{tic(label)} {v}" for label, v in ticks) + ")\n"
                      f"set xrange [{xr[0]}:{xr[1]}]\n")
    gap = 0.012
    for p, (ptitle, rows) in enumerate(panels):
        if shared_rows:
            pw = (right - left - gap * (len(panels) - 1)) / len(panels)
            x0, x1 = left + p * (pw + gap), left + p * (pw + gap) + pw
        else:
            x0, x1 = left, right
        y1, y0 = (1 - px / height for px in boxes[p])
        script.append(f"set lmargin at screen {x0:.4f}\nset rmargin at screen {x1:.4f}\n"
                      f"set tmargin at screen {y1:.4f}\nset bmargin at screen {y0:.4f}\n")
        n = len(rows)
        data, left_labels, right_labels = [], [], []
        # One number format a panel: as many decimals as its largest needs.
        biggest = max((v for _, v in rows if v is not None), default=0)
        decimals = 0 if biggest >= 100 else 1 if biggest >= 10 else 2
        for r, (impl, v) in enumerate(rows):
            y = n - 1 - r
            if v is None:
                right_labels.append(f'{1 if ratio else 0} {y} "not run"')
                continue
            lo_x, hi_x = (min(1.0, v), max(1.0, v)) if ratio else (0, v)
            data.append(f"{v} {y} {lo_x} {hi_x} {int(colours[impl][1:], 16)}")
            text = f"{v:.2f}" if ratio else f"{v:.{decimals}f}"
            if ratio and v < 1:
                left_labels.append(f'{lo_x / 1.12} {y} "{text}"')
            else:
                right_labels.append(f'{hi_x * 1.12 if ratio else hi_x} {y} "{text}"')
        for block, lines in (("bars", data), ("left", left_labels), ("right", right_labels)):
            if lines:
                script.append(f"${block}{p} << EOD\n" + "\n".join(lines) + "\nEOD\n")
        if shared_rows and p > 0:
            ytics = ", ".join(f'"" {n - 1 - r}' for r in range(n))
        else:
            ytics = ", ".join(f"{tic(impl)} {n - 1 - r}" for r, (impl, _) in enumerate(rows))
        script.append(f"set ytics ({ytics}) scale 0\nset yrange [-0.6:{n - 0.4}]\n")
        script.append(f"set title {q(ptitle)}\n")
        if shared_rows and p == 0:  # one axis label under all the panels
            script.append(f"set label 100 {q(xlabel)} at screen {(left + right) / 2:.4f}, "
                          f"{14 / height:.4f} center\n")
        elif not shared_rows and p == len(panels) - 1:
            script.append(f"set xlabel {q(xlabel)}\n")
        if not ratio:
            top = max(v for _, v in rows if v is not None)
            script.append(f"set xrange [0:{top * 1.18}]\nset xtics autofreq\n")
        plot = ["1/0 notitle"]  # an axis even for a panel with nothing to draw
        if data:
            plot.append(f"$bars{p} using 1:2:3:4:($2-0.36):($2+0.36):5 with boxxyerror lc rgb variable")
        if left_labels:
            plot.append(f'$left{p} using 1:2:3 with labels right font ",9" tc rgb "#333333"')
        if right_labels:
            plot.append(f'$right{p} using 1:2:3 with labels left offset 0.4,0 font ",9" tc rgb "#333333"')
        if ratio:
            script.append('set arrow 1 from 1, graph 0 to 1, graph 1 nohead lw 3.5 lc rgb "#000000" front\n')
        script.append("plot " + ", ".join(plot) + "\nunset label 100\n")
    script.append("unset multiplot\n")
    return gnuplot("".join(script), out_dir, name, log, size=(width, height))


def log_ticks(lo, hi):
    """Ticks from lo to hi for a log axis: 1-2-5 a decade, finer when the
    axis spans less than one."""
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):
        ticks, e = [], math.floor(math.log10(lo))
        while 10.0 ** e <= hi:
            ticks += [m * 10.0 ** e for m in mantissas if lo <= m * 10.0 ** e <= hi]
            e += 1
        if len(ticks) >= 4:
            break
    return ticks


def tail_ticks(top):
    """x ticks of a latency plot: 1/(1-p) at p = 50%, 90%, 99%, ... up to top."""
    ticks = [("50%", 2)]
    p, x = 90.0, 10
    while x <= top * 1.0001:
        ticks.append((f"{p:.{max(0, len(str(x)) - 3)}f}%", x))
        p, x = 100 - (100 - p) / 10, x * 10
    return ticks


# What the latency figure's series are, in its key.
LATENCY_SERIES = {"iocm_hot": "notifier spinning", "iocm_parked": "notifier asleep",
                  "futex_floor": "one futex wake-up", "iocm": "iocm-plaintext",
                  "iocm_ahead": "--receive-ahead",
                  "iocm_ahead_fixed": "--receive-ahead, IOCM_FIXED_FILES",
                  "iocm_ahead_all": "--receive-ahead --inline-all"}


def latency_plot(percentiles, rounds, out_dir, log):
    """Latency against percentile, HdrHistogram's way: x is 1/(1-p) on a
    log scale (each step right is ten times rarer: 50%, 90%, 99%, 99.9%),
    y the latency on a log scale. Left: Post -> OnComplete (the engine's
    histogram: p50, p99, p99.9, and its slowest sample at 1/(1-p) = the
    number of samples); right: wrk's per-request percentiles."""
    groups = [("post_latency", "Post → OnComplete, one at a time"),
              ("plaintext_latency", "HTTP request → response (wrk, 64 connections)")]
    panels = []
    for scenario, ptitle in groups:
        series = {}
        for (suite, scen, impl), reps in percentiles.items():
            if scen != scenario:
                continue
            pts = {}
            for pct in {p for r, _ in reps for p in r if p != "max"}:
                vals = [r[pct] for r, _ in reps if pct in r]
                pts[100 / (100 - pct)] = statistics.median(vals) / 1e3
            tops = [(r["max"], n) for r, n in reps if "max" in r and n]
            top = (statistics.median(n for _, n in tops), statistics.median(m for m, _ in tops) / 1e3) \
                if tops else None
            if pts:
                series[impl] = (sorted(pts.items()), top)
        if series:
            panels.append((ptitle, series))
    if not panels:
        return None
    # Pixels: title, plot, tick labels and axis label, then the key, one
    # line per series of the fullest panel.
    keys = max(len(series) for _, series in panels)
    width = 560 * len(panels) + 40
    plot_top, plot_px, below_px, key_px = 70, 300, 80, 19
    height = plot_top + plot_px + below_px + key_px * keys + 10
    t_margin, b_margin = 1 - plot_top / height, 1 - (plot_top + plot_px) / height
    key_top = 1 - (plot_top + plot_px + below_px) / height
    script = [f'set multiplot title {q(f"Latency percentiles ({rounds_note(rounds)})")} font ",13"\n',
              'set border lc rgb "#444444"\nset grid lc rgb "#dddddd"\n',
              'set logscale xy\n']
    for p, (ptitle, series) in enumerate(panels):
        # Out to the rarest point the panel has, 99.9% at least.
        xmax = max([1000] + [x for pts, top in series.values()
                             for x in [x for x, _ in pts] + ([top[0]] if top else [])])
        ticks = tail_ticks(xmax)
        x0 = 0.02 + p * (0.98 / len(panels)) + 0.085
        x1 = 0.02 + (p + 1) * (0.98 / len(panels)) - 0.02
        script.append(f"set lmargin at screen {x0:.4f}\nset rmargin at screen {x1:.4f}\n"
                      f"set tmargin at screen {t_margin:.4f}\nset bmargin at screen {b_margin:.4f}\n")
        ys = [y for pts, top in series.values() for _, y in pts] + \
             [top[1] for _, top in series.values() if top]
        ylo, yhi = min(ys) / 1.4, max(ys) * 1.4
        yt = log_ticks(ylo, yhi)
        script.append("set xtics (" + ", ".join(f"{tic(t)} {x}" for t, x in ticks) + ")\n"
                      f"set xrange [1.6:{xmax * 1.8}]\n"
                      "set ytics (" + ", ".join(f'"{y:g}" {y}' for y in yt) + ")\n"
                      f"set yrange [{ylo}:{yhi}]\n"
                      f"set title {q(ptitle)}\n"
                      'set xlabel "percentile (x: 1/(1−p), log scale)"\n'
                      'set ylabel "latency, µs (log scale; lower is better)"\n'
                      f"set key at screen {x0:.4f}, {key_top:.4f} left top vertical Left reverse "
                      f"samplen 3 maxrows {keys}\n")
        impls = sorted(series, key=lambda i: (i != "iocm", i))
        colours = colours_for(impls)
        if "iocm_hot" in colours:  # the engine panel: iocm itself is the hot one
            colours["iocm_hot"] = IOCM_COLOUR
        blocks, plots = [], []
        for i, impl in enumerate(impls):
            pts, top = series[impl]
            blocks.append(f"$s{i} << EOD\n" + "\n".join(f"{x} {y}" for x, y in pts) + "\nEOD\n")
            thick = impl in ("iocm", "iocm_hot")
            style = f'lw {3.5 if thick else 2} lc rgb "{colours[impl]}"'
            if impl.startswith("iocm_") and impl != "iocm_hot":
                style += " dt (8,4)"
            notes = [LATENCY_SERIES[impl]] if impl in LATENCY_SERIES else []
            if top:
                blocks.append(f"$m{i} << EOD\n{top[0]} {top[1]}\nEOD\n")
                notes.append(f"○ the slowest of {top[0]:.0f}")
            label = impl + (f" ({'; '.join(notes)})" if notes else "")
            plots.append(f"$s{i} using 1:2 with linespoints {style} pt 7 ps 1.1 title {q(label)}")
            if top:
                plots.append(f'$m{i} using 1:2 with points pt 6 ps 1.6 lw 2 lc rgb "{colours[impl]}" notitle')
        script.append("".join(blocks) + "plot " + ", ".join(plots) + "\n")
    script.append("unset multiplot\n")
    return gnuplot("".join(script), out_dir, "latency", log, size=(width, height))


# Queue scenarios in order of contention, for the queue figure's panels.
QUEUE_ORDER = ("spsc_single", "spsc_bulk32", "mpsc_2x1", "mpmc_2x2", "mpmc_2x2_apart", "mpmc_4x4",
               "mpmc_8x8", "mpmc_16x16")


def queue_plot(med, rounds, out_dir, log):
    """Each queue's throughput over iocm's, one panel per throughput
    scenario, on a log2 axis: ratios are multiplicative, so twice and half
    as fast lie as far from iocm's line, and a 50x gap still fits beside a
    1.1x one."""
    # The blocking scenarios have two queues only: their table says it.
    scenarios = sorted({k[1] for k in med if k[0] == "queue" and
                        k[1] not in bench_table.LATENCY_SCENARIOS and
                        not k[1].startswith("blocking_") and ("queue", k[1], "iocm") in med},
                       key=lambda s: (QUEUE_ORDER.index(s) if s in QUEUE_ORDER else len(QUEUE_ORDER), s))
    ratios = {}
    for s in scenarios:
        base = med[("queue", s, "iocm")]
        for (suite, scenario, impl), v in med.items():
            if suite == "queue" and scenario == s and impl != "iocm" and base > 0 and v > 0:
                ratios.setdefault(impl, {})[s] = v / base
    if not ratios:
        return None
    # Rows in one order in every panel, iocm's closest rivals on top (the
    # geometric mean of the ratios over the scenarios each ran).
    impls = sorted(ratios, key=lambda i: (-statistics.geometric_mean(ratios[i].values()), i))
    panels = [(f"{s}\n(iocm {med[('queue', s, 'iocm')]:.1f} M/s)", [(i, ratios[i].get(s)) for i in impls])
              for s in scenarios]
    return hbar_plot(panels, f"Queue throughput relative to iocm ({rounds_note(rounds)})",
                     "throughput ÷ iocm's, log2 scale: left of the black line slower than iocm, "
                     "right of it faster", out_dir, "queue", log,
                     ratio=True, shared_rows=True)


def value_panels(med, suite, scenarios):
    """[(title, [(impl, value)])] for hbar_plot: iocm first, then by value."""
    panels = []
    for scenario, title in scenarios:
        rows = [(k[2], v) for k, v in med.items() if k[:2] == (suite, scenario)]
        rows.sort(key=lambda r: (r[0] != "iocm", -r[1], r[0]))
        if rows:
            panels.append((title, rows))
    return panels


def figures(med, percentiles, rounds, out_dir, log):
    """The figures, drawn: [(path under out_dir, title, how to read it)]."""
    made = [
        (line_plot(med, "engine", "file_randread_qd", "4 KiB random reads, page-cached file",
                   "k reads/s", "queue depth", out_dir, "file_randread", log, rounds),
         "File reads",
         "4 KiB random reads: k reads/s (higher is better) against the queue depth (log "
         "scale). iocm is the thick black line, its variants (iocm_*) are dashed; the key "
         "lists the lines in the order they end at the deepest queue, those run at fewer "
         "depths last."),
        (line_plot(med, "engine", "echo_c", "64-byte TCP echo over loopback", "k round trips/s",
                   "connections", out_dir, "echo", log, rounds),
         "TCP echo",
         "64-byte TCP echo: k round trips/s (higher is better) against the number of "
         "connections (log scale). iocm thick and black, its variants dashed; the key in the "
         "order the lines end at the most connections."),
        (queue_plot(med, rounds, out_dir, log),
         "Queue throughput",
         "Each queue's throughput divided by iocm's in the same scenario, on a log2 axis; the "
         "thick black line is iocm (1): a bar to its right is a queue faster than iocm, to its "
         "left slower, and its length is how many times. One panel per scenario (title: "
         "iocm's own M records/s), the same rows in every panel."),
        (hbar_plot(value_panels(med, "engine", [("nop", "nop, 256 in flight (M ops/s)"),
                                               ("post", "Post, 256 jobs in flight (M jobs/s)")]),
                   f"Dispatch through the engine ({rounds_note(rounds)})",
                   "M operations/s (higher is better)", out_dir, "dispatch", log),
         "Dispatch",
         "M operations/s for nop through the engine and for Post, one bar per implementation, "
         "iocm's black and first; each panel has its own scale."),
        (hbar_plot(value_panels(med, "net", [
            ("plaintext", "without pipelining (k requests/s)"),
            ("plaintext_pipelined", "16 requests pipelined per connection (k requests/s)")]),
                   f"HTTP plaintext under wrk, 64 connections ({rounds_note(rounds)})",
                   "k requests/s (higher is better)", out_dir, "plaintext", log),
         "HTTP plaintext",
         "k requests/s of each server under the same wrk load, without and with pipelining; "
         "iocm-plaintext's bars black; each panel has its own scale."),
        (latency_plot(percentiles, rounds, out_dir, log),
         "Latency percentiles",
         "Latency (log scale) against the percentile on a log axis of 1/(1−p), so that each "
         "step right is ten times rarer (50%, 90%, 99%, 99.9%): the tail gets as much room as "
         "the median. Left: Post → OnComplete with the notifier spinning (iocm_hot, black) or "
         "asleep (iocm_parked), beside one futex wake-up (the floor under parked); the open "
         "circle is the slowest of n samples, drawn at 1/(1−p) = n. Right: wrk's percentiles "
         "per request for each HTTP server."),
    ]
    return [(path, title, caption) for path, title, caption in made if path]


def write_report(out, title, meta, suite_files, topology_text, errors, plots, summary):
    """report.md, report.html and summary.json in out, from the <suite>.json
    files named in suite_files ([(suite, path)]): every table, the targets
    and the figures, one set of blocks written twice. Returns the markdown
    and whether every figure wanted was drawn."""
    heading = bench_table.heading
    log = os.path.join(out, "iocm-bench.log")
    sections, target_rows = [], []
    all_runs, all_percentiles = {}, {}
    errors = list(errors)
    summary.update({"scenarios": {}, "targets": [], "plots": []})
    for suite, path in suite_files:
        _, info = bench_table.render(path)
        sections += [heading(suite, 2)] + info["blocks"]
        for k, v in info["medians"].items():
            summary["scenarios"].setdefault("/".join(k[:2]), {})[k[2]] = v
        summary["targets"] += info["targets"]
        target_rows += info["target_rows"]
        errors += [e for e in info["errors"] if e not in errors]
        all_runs.update(info["runs"])
        all_percentiles.update(info["percentiles"])
    if topology_text is not None:
        sections += [heading("topology", 2), {"kind": "pre", "text": topology_text}]

    drawn, complete = [], True
    if plots and all_runs:
        if shutil.which("gnuplot") is None:
            errors.append("gnuplot is not installed (scripts/setup installs it): no plots")
            complete = False
        else:
            rounds = summary.get("rounds") or max(len(v) for v in all_runs.values())
            del PLOT_FAILURES[:]
            drawn = figures(medians(all_runs), all_percentiles, rounds, out, log)
            if PLOT_FAILURES:
                errors.append(f"gnuplot could not draw {', '.join(PLOT_FAILURES)}; see {log}")
                complete = False
            summary["plots"] = [p for p, _, _ in drawn]

    blocks = [heading(title, 1), {"kind": "para", "text": meta}]
    if errors:
        blocks += [heading("Errors", 2), {"kind": "list", "items": errors}]
    if target_rows:
        met = sum(r[-1] == "yes" for r in target_rows)
        missed = sum(r[-1] == "NO" for r in target_rows)
        blocks += [heading("Targets", 2),
                   {"kind": "para", "text": f"{met} met, {missed} missed, "
                                            f"{len(target_rows) - met - missed} not run "
                                            "(each suite's section below has its own)."},
                   bench_table.table(["scenario", "subject", "compared with", "ratio", "target", "met"],
                                     "lllrrc", target_rows)]
    if drawn:
        blocks.append(heading("Figures", 2))
        blocks += [{"kind": "figure", "path": p, "title": t, "caption": c} for p, t, c in drawn]
    blocks += sections

    summary["errors"] = errors
    text = bench_table.markdown(blocks)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "report.html"), "w", encoding="utf-8") as f:
        f.write(bench_table.html(blocks, title, out))
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return text, complete


def report_main(argv):
    """iocm-bench report --from DIR [--out DIR2] [--no-plots]: report.md,
    report.html, summary.json and plots/ again from DIR's <suite>.json
    files, without running anything."""
    src, out, plots = None, None, True
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if a in ("--from", "--out"):
            v = next(it, None)
            if v is None:
                fail(f"{a} needs a value (try --help)")
            src, out = (v, out) if a == "--from" else (src, v)
        elif a == "--no-plots":
            plots = False
        else:
            fail(f"unknown argument '{a}' (try --help)")
    if src is None:
        fail("report needs --from DIR (a results directory)")
    out = out or src
    suite_files = [(s, os.path.join(src, f"{s}.json")) for s in SUITE_FILES
                   if os.path.exists(os.path.join(src, f"{s}.json"))]
    if not suite_files:
        fail(f"{src} has none of {', '.join(s + '.json' for s in SUITE_FILES)}", 1)
    try:
        with open(os.path.join(src, "summary.json")) as f:
            old = json.load(f)
    except (OSError, json.JSONDecodeError):
        old = {}
    os.makedirs(out, exist_ok=True)
    if os.path.realpath(out) != os.path.realpath(src):
        for name in [f"{s}.json" for s, _ in suite_files] + ["topology.txt"]:
            if os.path.exists(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
        suite_files = [(s, os.path.join(out, f"{s}.json")) for s, _ in suite_files]
    with open(suite_files[0][1]) as f:
        context = json.load(f).get("context", {})
    topology_text = None
    if os.path.exists(os.path.join(out, "topology.txt")):
        with open(os.path.join(out, "topology.txt")) as f:
            topology_text = f.read()
    commit = old.get("commit") or os.path.basename(os.path.normpath(src))
    subs = old.get("subcommands") or [s for s, _ in suite_files] + (["topology"] if topology_text else [])
    mode = old.get("mode", "?")
    summary = {k: v for k, v in old.items() if k not in ("scenarios", "targets", "errors", "plots")}
    summary.setdefault("commit", commit)
    title = f"iocm-bench: {' '.join(subs)} ({mode}, {old.get('rounds', '?')} round(s))"
    meta = (f"Commit {commit}, {old.get('date') or context.get('date', '?')}, "
            f"{old.get('cpus') or context.get('num_cpus', '?')} CPUs. Results in `{out}`.")
    # The run's errors, but not what its plotting said: that is redone here.
    carried = [e for e in old.get("errors", []) if not e.startswith("gnuplot ")]
    _, complete = write_report(out, title, meta, suite_files, topology_text, carried, plots, summary)
    print(f"report: {out}/report.md, {out}/report.html" + (", plots/" if summary["plots"] else ""))
    return 0 if complete else 1


# --- main --------------------------------------------------------------------------

def parse(argv):
    subs, opts = [], {"mode": "default", "json": False, "out": None, "filter": ".",
                      "plots": True, "repetitions": None, "server_cpus": None}
    it = iter(argv)
    for a in it:
        def value():
            v = next(it, None)
            if v is None:
                fail(f"{a} needs a value (try --help)")
            return v
        if a in ("-h", "--help"):
            print(__doc__.strip())
            sys.exit(0)
        elif a in SUBCOMMANDS or a == "all":
            subs.append(a)
        elif a == "--quick":
            opts["mode"] = "quick"
        elif a == "--full":
            opts["mode"] = "full"
        elif a == "--json":
            opts["json"] = True
        elif a == "--no-plots":
            opts["plots"] = False
        elif a == "--out":
            opts["out"] = value()
        elif a == "--server-cpus":
            v = value()
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", v):
                fail(f"--server-cpus wants a CPU list like 0-1, got '{v}'")
            opts["server_cpus"] = v
        elif a == "--filter":
            opts["filter"] = value()
            try:
                re.compile(opts["filter"])
            except re.error as e:
                fail(f"--filter '{opts['filter']}' is not a regular expression: {e}")
        elif a == "--repetitions":
            v = value()
            if not v.isdigit() or int(v) == 0:
                fail(f"--repetitions wants a positive number, got '{v}'")
            opts["repetitions"] = int(v)
        else:
            fail(f"unknown argument '{a}' (try --help)")
    if not subs or "all" in subs:
        subs = list(SUBCOMMANDS)
    return subs, opts


def commit_of():
    try:
        return subprocess.run(["git", "-C", SOURCE_DIR, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv):
    if argv[:1] == ["topology"]:
        os.execv(tool("tools/iocm-topology"), [tool("tools/iocm-topology"), "topology"] + argv[1:])
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    subs, o = parse(argv)
    rounds, wrk_seconds, fio_seconds = MODES[o["mode"]]
    rounds = o["repetitions"] or rounds
    commit = commit_of()
    out = o["out"] or os.path.join("results", f"{datetime.date.today()}-{commit}")
    os.makedirs(out, exist_ok=True)
    log = os.path.join(out, "iocm-bench.log")
    progress = Progress()
    flt = o["filter"]
    suites = {}   # suite file name -> (gbench-shaped data)
    errors = []

    def add(suite, data):
        if data is None:
            return
        if "iocm_bench_error" in data:
            errors.append(data["iocm_bench_error"])
        have = suites.setdefault(suite, {"context": data.get("context", {}), "benchmarks": []})
        have["benchmarks"] += data.get("benchmarks", [])

    engine_bin, asio_bin = tool("bench/iocm-engine-bench"), tool("bench/iocm-asio-uring-bench")
    def engine_run(step, scenarios, name):
        add(step, run_gbench(engine_bin, f"^engine/({scenarios})/", flt, rounds,
                             os.path.join(out, f"{name}.raw.json"), log, progress, step))

    topology_text = None
    for sub in subs:
        if sub == "queue":
            add("queue", run_gbench(tool("bench/iocm-queue-bench"), "^queue/", flt,
                                    rounds, os.path.join(out, "queue.raw.json"), log, progress, "queue"))
        elif sub == "engine":
            engine_run("engine", "nop|post|post_latency", "engine")
        elif sub == "file":
            engine_run("file", "file_randread_qd[0-9]+", "file")
            add("file", run_gbench(asio_bin, "^engine/file_randread", flt, rounds,
                                   os.path.join(out, "file_asio.raw.json"), log, progress, "file"))
            e, errs = run_fio(FILE_DEPTHS, rounds, fio_seconds, log, progress, flt)
            add("file", {"benchmarks": e})
            errors += errs
        elif sub == "net":
            engine_run("net", "echo_c[0-9]+", "net")
            add("net", run_gbench(asio_bin, "^engine/echo_c", flt, rounds,
                                  os.path.join(out, "net_asio.raw.json"), log, progress, "net"))
            e, errs = run_net_servers(rounds, wrk_seconds, log, progress, flt, o["server_cpus"])
            add("net", {"benchmarks": e})
            errors += errs
        elif sub == "topology":
            r = subprocess.run([tool("tools/iocm-topology"), "topology"], capture_output=True, text=True)
            topology_text = r.stdout if r.returncode == 0 else r.stderr
            with open(os.path.join(out, "topology.txt"), "w") as f:
                f.write(topology_text)

    # One JSON per suite, one report (markdown and HTML), one summary.
    suite_files = []
    for suite, data in suites.items():
        path = os.path.join(out, f"{suite}.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
        suite_files.append((suite, path))
    now = datetime.datetime.now().isoformat(timespec="seconds")
    title = f"iocm-bench: {' '.join(subs)} ({o['mode']}, {rounds} round(s))"
    meta = f"Commit {commit}, {now}, {os.cpu_count()} CPUs. Results in `{out}`."
    summary = {"commit": commit, "mode": o["mode"], "rounds": rounds, "subcommands": subs,
               "date": now, "cpus": os.cpu_count()}
    text, _ = write_report(out, title, meta, suite_files, topology_text, errors, o["plots"], summary)
    if o["json"]:
        print(json.dumps(summary, indent=1))
    else:
        print(text)
        print(f"results: {out}/ (report.md, report.html, summary.json, <suite>.json, plots/)")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
