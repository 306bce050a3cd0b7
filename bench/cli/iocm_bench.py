#!/usr/bin/env python3
"""iocm-bench: iocm against what a host would use instead, on the same work, in one run.

usage: iocm-bench [SUBCOMMAND ...] [--quick | --full] [--repetitions N] [--json]
                  [--out DIR] [--filter REGEX] [--no-plots]
       iocm-bench topology [topology options; see iocm-bench topology --help]

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
summary.json, plots/*.svg (gnuplot), and each tool's log. A progress bar goes to
stderr when it is a terminal. Exit status: 0; 1 when a benchmark reported an error
(lost or duplicated records) or a tool failed; 2 for a bad argument.
"""
import datetime
import json
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
# Queue depths of engine/file_randread_qd<N> and widths of engine/echo_c<N>:
# bench/CMakeLists.txt sets them, for the benchmarks too (bench_io.h).
FILE_DEPTHS = tuple(int(n) for n in "@IOCM_BENCH_FILE_DEPTHS@".split(";"))
ECHO_WIDTHS = tuple(int(n) for n in "@IOCM_BENCH_ECHO_WIDTHS@".split(";"))
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
        return [], [], {}
    missing = [n for n, p in (("wrk", wrk), ("nginx", nginx)) if p is None]
    if missing:
        return [], [f"{' and '.join(missing)} not installed (scripts/setup --bench installs them)"], {}
    cpus, client_cpus = cpu_split(server_cpus)
    cpu_list = ",".join(map(str, cpus))
    prefix = tempfile.mkdtemp(prefix="iocm-nginx-")
    lua = os.path.join(prefix, "pipeline.lua")
    with open(lua, "w") as f:
        f.write(PIPELINE_LUA)
    modes = [("plaintext", []), ("plaintext_pipelined", ["-s", lua])]
    entries, errors, cdf = [], [], {}
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
                        # wrk's latency is per request only without pipelining.
                        entries.append(entry(f"net/plaintext_p99/{s}", rep, None,
                                             p99_ns=pct[99]))
                        entries.append(entry(f"net/plaintext_latency/{s}", rep, None,
                                             p50_ns=pct.get(50, float("nan")),
                                             p99_ns=pct[99], p999_ns=float("nan"),
                                             max_ns=float("nan")))
                        cdf.setdefault(s, []).append(pct)
    finally:
        for s, p in procs.items():
            status = stop(p)
            if s.startswith("iocm") and status not in (0, None):
                errors.append(f"iocm-plaintext exited {status} on SIGTERM")
        shutil.rmtree(prefix, ignore_errors=True)
        progress.end()
    return entries, errors, cdf


# --- plots -----------------------------------------------------------------------

def gnuplot(script, out_dir, name, log):
    path = os.path.join(out_dir, "plots", name + ".svg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    full = (f'set terminal svg size 800,480 dynamic font "sans,11" noenhanced\n'
            f'set output "{path}"\n' + script)
    with open(os.path.join(out_dir, "plots", name + ".gp"), "w") as f:
        f.write(full)
    r = subprocess.run(["gnuplot"], input=full, capture_output=True, text=True)
    if r.returncode != 0:
        with open(log, "a") as logf:
            logf.write(f"gnuplot {name}: {r.stderr}\n")
        return None
    return os.path.relpath(path, out_dir)


def medians(runs):
    return {k: statistics.median(v) for k, v in runs.items()}


# iocm itself is drawn thick and black; the others take these in turn.
LINE_COLOURS = ["#e69f00", "#0072b2", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#999999",
                "#8c564b", "#17becf", "#bcbd22", "#9467bd", "#e377c2"]


def line_plot(med, suite, prefix, xs, title, ylabel, xlabel, out_dir, name, log):
    impls = sorted({k[2] for k in med if k[0] == suite and k[1].startswith(prefix)})
    if not impls:
        return None
    blocks, plots = [], []
    for i, impl in enumerate(impls):
        pts = [(x, med[(suite, f"{prefix}{x}", impl)]) for x in xs
               if (suite, f"{prefix}{x}", impl) in med]
        if not pts:
            continue
        blocks.append("$d%d << EOD\n%s\nEOD\n" % (i, "\n".join(f"{x} {y}" for x, y in pts)))
        # A colour of its own for each of up to 12 lines, and iocm's
        # variants dashed, so that a dozen implementations stay apart.
        style = "linespoints lw 3" if impl == "iocm" else "linespoints lw 1.5"
        if impl.startswith("iocm_"):
            style += " dt 2"
        colour = "#000000" if impl == "iocm" else LINE_COLOURS[i % len(LINE_COLOURS)]
        style += f' lc rgb "{colour}"'
        plots.append(f'$d{i} using 1:2 with {style} title "{impl}"')
    script = "".join(blocks) + (
        f'set title "{title}"\nset xlabel "{xlabel}"\nset ylabel "{ylabel}"\nset logscale x 2\n'
        f'set xtics ({", ".join(str(x) for x in xs)})\nset xrange [{xs[0] * 0.8}:{xs[-1] * 1.25}]\n'
        'set key outside right\nset grid\n'
        f'set yrange [0:*]\nplot ' + ", ".join(plots) + "\n")
    return gnuplot(script, out_dir, name, log)


def bar_plot(med, suite, scenarios, title, ylabel, out_dir, name, log, logscale=False):
    impls = sorted({k[2] for k in med if k[0] == suite and k[1] in scenarios},
                   key=lambda i: (i != "iocm", i))
    scenarios = [s for s in scenarios if any((suite, s, i) in med for i in impls)]
    if not impls or not scenarios:
        return None
    rows = ["scenario " + " ".join(impls)]
    for s in scenarios:
        rows.append(s + " " + " ".join(str(med.get((suite, s, i), "NaN")) for i in impls))
    script = ("$d << EOD\n" + "\n".join(rows) + "\nEOD\n" +
              f'set title "{title}"\nset ylabel "{ylabel}"\nset style data histograms\n'
              'set style histogram clustered gap 1\nset style fill solid 0.8 border -1\n'
              'set key outside right\nset grid ytics\nset xtics rotate by -20\n' +
              ("set logscale y\n" if logscale else "set yrange [0:*]\n") +
              "plot " + ", ".join(f'$d using {j + 2}:xtic(1) title columnhead' for j in range(len(impls))) + "\n")
    return gnuplot(script, out_dir, name, log)


def cdf_plot(cdf, post_tails, out_dir, log):
    blocks, plots = [], []
    for i, (server, rounds) in enumerate(sorted(cdf.items())):
        pts = []
        for p in (50, 75, 90, 99):
            vals = [r[p] for r in rounds if p in r]
            if vals:
                pts.append((statistics.median(vals) / 1e3, p))
        blocks.append("$w%d << EOD\n%s\nEOD\n" % (i, "\n".join(f"{x} {y}" for x, y in pts)))
        plots.append(f'$w{i} using 1:2 with linespoints lw 2 title "{server} (wrk, 64 conns)"')
    for j, (key, rows) in enumerate(sorted(post_tails.items())):
        cols = [statistics.median(r[c] for r in rows) for c in range(3)]
        blocks.append("$p%d << EOD\n%s\nEOD\n" % (j, "\n".join(
            f"{v / 1e3} {p}" for v, p in zip(cols, (50, 99, 99.9)))))
        what = "one futex wake-up" if key[2] == "futex_floor" else "Post->OnComplete"
        plots.append(f'$p{j} using 1:2 with linespoints dt 2 title "{key[2]} ({what})"')
    if not plots:
        return None
    script = "".join(blocks) + (
        'set title "Latency percentiles"\nset xlabel "latency (us, log)"\nset logscale x\n'
        'set ylabel "percentile"\nset yrange [40:100]\nset key below\nset grid\n'
        "plot " + ", ".join(plots) + "\n")
    return gnuplot(script, out_dir, "latency", log)


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
    cdf = {}

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
            e, errs, c = run_net_servers(rounds, wrk_seconds, log, progress, flt, o["server_cpus"])
            add("net", {"benchmarks": e})
            errors += errs
            cdf.update(c)
        elif sub == "topology":
            r = subprocess.run([tool("tools/iocm-topology"), "topology"], capture_output=True, text=True)
            topology_text = r.stdout if r.returncode == 0 else r.stderr
            with open(os.path.join(out, "topology.txt"), "w") as f:
                f.write(topology_text)

    # One JSON per suite, one report, one summary.
    report = [f"# iocm-bench: {' '.join(subs)} ({o['mode']}, {rounds} round(s))\n",
              f"Commit {commit}, {datetime.datetime.now().isoformat(timespec='seconds')}, "
              f"{os.cpu_count()} CPUs. Results in `{out}`.\n"]
    summary = {"commit": commit, "mode": o["mode"], "rounds": rounds, "scenarios": {},
               "targets": [], "errors": [], "plots": []}
    all_runs, all_tails, all_rounds = {}, {}, {}
    for suite, data in suites.items():
        path = os.path.join(out, f"{suite}.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
        text, info = bench_table.render(path)
        report.append(f"\n## {suite}\n\n{text}")
        for k, v in info["medians"].items():
            summary["scenarios"].setdefault("/".join(k[:2]), {})[k[2]] = v
        summary["targets"] += info["targets"]
        errors += info["errors"]
        runs, tails = info["runs"], info["tails"]
        all_runs.update(runs)
        all_tails.update(tails)
    if topology_text is not None:
        report.append("\n## topology\n\n```\n" + topology_text + "```\n")

    if o["plots"] and all_runs:
        if shutil.which("gnuplot") is None:
            errors.append("gnuplot is not installed (scripts/setup --bench installs it): no plots")
        else:
            med = medians(all_runs)
            plots = [
                line_plot(med, "engine", "file_randread_qd", FILE_DEPTHS,
                          "4 KiB random reads, page-cached file", "k reads/s", "queue depth",
                          out, "file_randread", log),
                line_plot(med, "engine", "echo_c", ECHO_WIDTHS, "64-byte TCP echo over loopback",
                          "k round trips/s", "connections", out, "echo", log),
                bar_plot(med, "engine", ["nop", "post"], "Dispatch through the engine",
                         "M ops/s", out, "dispatch", log),
                bar_plot(med, "net", ["plaintext", "plaintext_pipelined"],
                         "HTTP plaintext (wrk, 64 connections)", "k requests/s", out, "plaintext", log),
                bar_plot(med, "queue", sorted({k[1] for k in med if k[0] == "queue" and
                                               k[1] not in bench_table.LATENCY_SCENARIOS}),
                         "Queue throughput", "M records/s (log)", out, "queue", log, logscale=True),
                cdf_plot(cdf, {k: v for k, v in all_tails.items() if k[1] == "post_latency"}, out, log),
            ]
            summary["plots"] = [p for p in plots if p]
            if summary["plots"]:
                report.append("\n## Plots\n\n" + "\n".join(f"- [{p}]({p})" for p in summary["plots"]) + "\n")

    summary["errors"] = errors
    if errors:
        report.append("\n## Errors\n\n" + "\n".join(f"- {e}" for e in errors) + "\n")
    text = "\n".join(report)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if o["json"]:
        print(json.dumps(summary, indent=1))
    else:
        print(text)
        print(f"results: {out}/ (report.md, summary.json, <suite>.json, plots/)")
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
