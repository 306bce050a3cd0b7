#!/usr/bin/env python3
"""Turns a Google Benchmark JSON file (with repetitions) into a comparison
table: the median of each `<suite>/<scenario>/<impl>`, and iocm's ratio
against every peer in the same scenario, then checks the stated targets.

Usage: bench_table.py RESULTS.json [--markdown OUT.md] [--html OUT.html] [--baseline IMPL]
Exit status: 0, or 2 when the file is missing, malformed, or a benchmark
reported an error (a run that lost or duplicated records).
"""
import argparse
import html as htmllib
import json
import re
import statistics
import sys

NAME = re.compile(r"^(?P<suite>[a-z_]+)/(?P<scenario>[a-z0-9_]+)/(?P<impl>[a-z0-9_]+)")

# What each scenario reports: (unit label, how to read one run, higher is better?)
LATENCY_SCENARIOS = {"pingpong": "ns/round trip", "single_thread": "ns/pair",
                     "post_latency": "ns p50, post -> OnComplete",
                     "plaintext_latency": "ns p50, wrk request -> reply",
                     "plaintext_p99": "ns p99, wrk request -> reply",
                     "plaintext_cpu": "server CPU ns per request, user + system",
                     # One dequeue attempt on an empty queue of n producer lanes.
                     **{f"empty_poll_lanes_{n}": "ns/empty poll" for n in (1, 8, 64, 256)}}

# The stated targets. (suite, scenario, peer, op, bound), or
# (suite, scenario, subject, peer, op, bound) for a subject other than the
# baseline. ratio = subject / peer for throughput, subject time / peer time
# for latency; peer None means an absolute bound on the subject's own value.
TARGETS = [
    ("queue", "spsc_single", "moodycamel", ">=", 1.5),
    ("queue", "spsc_single", "atomic_queue", ">=", 1.3),
    ("queue", "spsc_bulk32", "moodycamel_bulk", ">=", 1.2),
    # Every scenario with more than one producer, at least moodycamel's.
    ("queue", "mpsc_2x1", "moodycamel", ">=", 1.0),
    ("queue", "mpmc_2x2", "moodycamel", ">=", 1.0),
    # Producers on CPUs of their own, consumers on others.
    ("queue", "mpmc_2x2_apart", "moodycamel", ">=", 1.0),
    ("queue", "mpmc_4x4", "moodycamel", ">=", 1.0),
    # Oversubscribed (threads 8 and 16 times the CPUs of a 2-CPU machine):
    # no collapse against the same peer in the same runs.
    ("queue", "mpmc_8x8", "moodycamel", ">=", 1.0),
    ("queue", "mpmc_16x16", "moodycamel", ">=", 1.0),
    # 64 producer lanes, 62 of them idle, through the queue with a summary
    # of its non-empty lanes.
    ("queue", "mpmc_2x2_64lanes", "iocm_summary", "moodycamel", ">=", 1.0),
    # The blocking face (consumers wait instead of spinning) against
    # moodycamel's BlockingConcurrentQueue.
    ("queue", "blocking_spsc", "moodycamel", ">=", 1.0),
    ("queue", "blocking_4x4", "moodycamel", ">=", 1.0),
    ("queue", "blocking_8x8", "moodycamel", ">=", 1.0),
    ("queue", "pingpong", "atomic_queue", "<=", 0.8),
    # An empty poll over 256 producer lanes: the summary of non-empty lanes
    # reads a few words instead of every lane (times: subject / peer).
    ("queue", "empty_poll_lanes_256", "iocm_summary", "iocm", "<=", 0.25),
    ("queue", "empty_poll_lanes_256", "iocm_summary", "moodycamel", "<=", 0.25),
    ("queue", "single_thread", None, "<=", 6.0),
    ("engine", "nop", "liburing_raw", ">=", 0.8),
    # Delivery where the completion lands: queue-depth-1 work within reach
    # of a single-thread liburing loop, submitted from a host thread and
    # from inside OnComplete (a continuation).
    ("engine", "file_randread_qd1", "liburing_raw", ">=", 0.8),
    # The same with the file opted into IOCM_SKIP_COMPLETION_ON_SUCCESS.
    ("engine", "file_randread_qd1", "iocm_sync", "liburing_raw", ">=", 0.8),
    ("engine", "echo_c1", "liburing_raw", ">=", 0.9),
    ("engine", "file_randread_qd1", "iocm_cont", "liburing_raw", ">=", 0.9),
    ("engine", "file_randread_qd16", "iocm_cont", "liburing_raw", ">=", 0.9),
    # A parked notifier's Post -> OnComplete within twice one futex wake-up
    # measured in the same run.
    ("engine", "post_latency", "iocm_parked", "futex_floor", "<=", 2.0),
    # Post dispatch: at least twice the best of Boost.Asio and libuv.
    ("engine", "post", "asio", ">=", 2.0),
    ("engine", "post", "libuv", ">=", 2.0),
    # 4 KiB random reads at queue depth 64: at least 0.9x fio's io_uring engine.
    ("engine", "file_randread_qd64", "fio", ">=", 0.9),
    # HTTP plaintext: at least 1.2x nginx's requests/s on the same cores, with
    # a p99 no worse (wrk without pipelining; with it, requests/s only).
    ("net", "plaintext", "nginx", ">=", 1.2),
    ("net", "plaintext_pipelined", "nginx", ">=", 1.2),
    ("net", "plaintext_p99", "nginx", "<=", 1.0),
    # The server's CPU time per request (user + system), without pipelining.
    ("net", "plaintext_cpu", "nginx", "<=", 0.8),
    # Receiving ahead (IOCM_RECEIVE_AHEAD: one multishot receive per
    # connection): the same server against nginx, and echo at width 16 and
    # 64 against a single-thread liburing loop of single-shot receives.
    ("net", "plaintext", "iocm_ahead", "nginx", ">=", 1.2),
    ("net", "plaintext_cpu", "iocm_ahead", "nginx", "<=", 0.8),
    ("engine", "echo_c16", "iocm_ahead", "liburing_raw", ">=", 1.1),
    ("engine", "echo_c64", "iocm_ahead", "liburing_raw", ">=", 1.1),
    # On one node, sharding costs at most 5% against the single-shard queue.
    # Only where threads <= CPUs on a 2-CPU machine: the oversubscribed
    # scenarios spread over 3x between runs there and cannot resolve 5%.
    ("queue", "single_thread", "iocm_sharded1", "iocm", "<=", 1.05),
    ("queue", "spsc_single", "iocm_sharded1", "iocm", ">=", 0.95),
    ("queue", "spsc_bulk32", "iocm_sharded1", "iocm", ">=", 0.95),
    ("queue", "pingpong", "iocm_sharded1", "iocm", "<=", 1.05),
]
PERCENTILES = ("p50_ns", "p99_ns", "p999_ns", "max_ns")
# Any percentile counter: p50_ns is the 50th, p999_ns the 99.9th.
PERCENTILE_FIELD = re.compile(r"^p(\d+)_ns$")
# Throughput scenarios counted in thousands rather than millions, by prefix.
THOUSANDS_SCENARIOS = {"echo": "k round trips/s", "file_randread": "k reads/s",
                       "plaintext": "k requests/s"}


def thousands_unit(scenario):
    for prefix, unit in THOUSANDS_SCENARIOS.items():
        if scenario.startswith(prefix):
            return unit
    return None


def value_of(run, scenario):
    """The figure a run contributes: ns for latency scenarios, M items/s else."""
    if scenario == "plaintext_p99":
        return run["p99_ns"]
    if scenario == "plaintext_cpu":
        return run["cpu_ns"]
    if "p50_ns" in run:
        return run["p50_ns"]
    if scenario == "pingpong":
        return run["roundtrip_ns"]
    if scenario == "single_thread" or scenario.startswith("empty_poll_lanes_"):
        scale = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[run.get("time_unit", "ns")]
        return run["real_time"] * scale
    if thousands_unit(scenario):
        return run["items_per_second"] / 1e3
    return run["items_per_second"] / 1e6


def load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"bench_table: cannot read {path}: {e}")
    if "benchmarks" not in data:
        sys.exit(f"bench_table: {path} has no 'benchmarks' list")
    runs, errors, by_round = {}, [], {}
    tails = {}  # key -> [(p50, p99, p999, max)] per repetition, for latency histograms
    cpu = {}  # key -> [the process's CPU ns per item] per repetition, where reported
    split = {}  # key -> [(user ns, system ns)] per repetition, where reported
    # key -> [({percent: ns}, samples)] per repetition: every pNN_ns counter
    # (p50_ns: 50, p999_ns: 99.9) and max_ns, and how many samples they
    # came from (the iterations), for the latency figure
    percentiles = {}
    for b in data["benchmarks"]:
        m = NAME.match(b.get("run_name", b.get("name", "")))
        if not m:
            continue
        if b.get("error_occurred"):
            errors.append(f"{m.group(0)}: {b.get('error_message', 'error')}")
            continue
        if b.get("run_type") == "aggregate":
            continue  # recompute medians from the repetitions themselves
        key = (m.group("suite"), m.group("scenario"), m.group("impl"))
        runs.setdefault(key, []).append(value_of(b, m.group("scenario")))
        by_round.setdefault(key, {})[b.get("repetition_index", len(runs[key]) - 1)] = runs[key][-1]
        if "p50_ns" in b:
            tails.setdefault(key, []).append(tuple(b.get(p, float("nan")) for p in PERCENTILES))
            pct = {}
            for field, v in b.items():
                m_pct = PERCENTILE_FIELD.match(field)
                if m_pct and v == v:  # not NaN
                    pct[float("0." + m_pct.group(1)) * 100] = v
            top = b.get("max_ns")
            if top is not None and top == top:
                pct["max"] = top
            percentiles.setdefault(key, []).append((pct, b.get("iterations", 0)))
        if "cpu_ns_per_item" in b:
            cpu.setdefault(key, []).append(b["cpu_ns_per_item"])
        if "user_ns" in b:  # a split: the plaintext server's user and system time
            split.setdefault(key, []).append((b["user_ns"], b["sys_ns"]))
    return data.get("context", {}), runs, tails, errors, by_round, cpu, split, percentiles


def paired_ratio(by_round, a, b):
    """Median over repetition rounds of a/b, each round's two runs taken
    together: with random interleaving, round k runs every benchmark once,
    so a slow spell of the machine that lasts a round cancels out. None when
    the two share no round."""
    ra, rb = by_round.get(a, {}), by_round.get(b, {})
    ratios = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
    return statistics.median(ratios) if ratios else None


def heading(text, level=3):
    return {"kind": "heading", "level": level, "text": text}


def table(head, align, rows):
    """align: one letter per column, l(eft), r(ight) or c(entre)."""
    return {"kind": "table", "head": head, "align": align, "rows": rows}


def render(path, baseline="iocm"):
    """The tables of one results file, and what they hold:
    (markdown text, {"medians", "runs", "tails", "percentiles", "targets",
    "target_rows", "errors", "blocks"}); blocks are the same tables as a
    document, which markdown() and html() write."""
    context, runs, tails, errors, by_round, cpu, split, percentiles = load(path)
    medians = {k: statistics.median(v) for k, v in runs.items()}
    scenarios = []
    for suite, scenario, _ in medians:
        if (suite, scenario) not in scenarios:
            scenarios.append((suite, scenario))

    header = (f"Host: {context.get('host_name', '?')}, {context.get('num_cpus', '?')} CPUs at "
              f"{context.get('mhz_per_cpu', '?')} MHz; date {context.get('date', '?')}")
    blocks = [{"kind": "para", "text": header}]
    for suite, scenario in scenarios:
        latency = scenario in LATENCY_SCENARIOS
        unit = LATENCY_SCENARIOS.get(scenario, thousands_unit(scenario) or "M records/s")
        base = medians.get((suite, scenario, baseline))
        blocks.append(heading(f"{suite}/{scenario} ({unit}, median of {max(len(runs[k]) for k in runs if k[:2] == (suite, scenario))} runs)"))
        ratio_head = f"{baseline} time / this" if latency else f"{baseline} / this"
        # The process's CPU time per item (every thread of it), where the
        # benchmark reports it: threads that spin or sleep cost that much.
        with_cpu = any(k[:2] == (suite, scenario) for k in cpu)
        cpu_head = ["CPU ns/item"] if with_cpu else []
        with_split = any(k[:2] == (suite, scenario) for k in split)
        if with_split:
            cpu_head = ["user ns", "system ns"]
        rows = []
        impls = sorted((k[2] for k in medians if k[:2] == (suite, scenario)),
                       key=lambda i: (i != baseline, medians[(suite, scenario, i)] if latency
                                      else -medians[(suite, scenario, i)]))
        for impl in impls:
            v = medians[(suite, scenario, impl)]
            if base is None or impl == baseline:
                ratio = "—"
            else:
                ratio = f"{(base / v):.2f}×"
            runs_of = runs[(suite, scenario, impl)]
            spread = f"{min(runs_of):.2f} – {max(runs_of):.2f}"
            row = [impl, f"{v:.2f}", spread, ratio]
            if with_cpu:
                c = cpu.get((suite, scenario, impl))
                row.append(f"{statistics.median(c):.0f}" if c else "—")
            elif with_split:
                sp = split.get((suite, scenario, impl))
                row += ([f"{statistics.median(u for u, _ in sp):.0f}",
                         f"{statistics.median(y for _, y in sp):.0f}"] if sp else ["—", "—"])
            rows.append(row)
        blocks.append(table(["impl", unit, "min – max", ratio_head] + cpu_head,
                            "lrrr" + "r" * len(cpu_head), rows))

    if tails:
        blocks.append(heading("Latency percentiles (ns, median over repetitions)"))
        rows = []
        for key, reps in sorted(tails.items()):
            cols = [statistics.median(r[i] for r in reps) for i in range(len(PERCENTILES))]
            rows.append(["/".join(key)] + [f"{c:.0f}" for c in cols])
        blocks.append(table(["benchmark", "p50", "p99", "p99.9", "max"], "lrrrr", rows))

    blocks.append(heading("Targets (ratios: median over repetition rounds of the paired ratio)"))
    target_rows = []
    checked = []
    for target in TARGETS:
        suite, scenario = target[:2]
        subject = target[2] if len(target) == 6 else baseline
        peer, op, bound = target[-3:]
        if not any(k[:2] == (suite, scenario) for k in medians):
            continue  # another suite's file
        mine = medians.get((suite, scenario, subject))
        other = medians.get((suite, scenario, peer)) if peer else 1.0
        if mine is None or other is None:
            target_rows.append([f"{suite}/{scenario}", subject, peer or "(absolute)", "n/a",
                                f"{op} {bound}", "not run"])
            checked.append({"scenario": f"{suite}/{scenario}", "subject": subject, "peer": peer,
                            "ratio": None, "target": f"{op} {bound}", "met": None})
            continue
        r = mine / other
        if peer:
            r = paired_ratio(by_round, (suite, scenario, subject), (suite, scenario, peer)) or r
        met = r >= bound if op == ">=" else r <= bound
        shown = f"{r:.2f}×" if peer else f"{r:.2f} ns"
        target_rows.append([f"{suite}/{scenario}", subject, peer or "(absolute)", shown,
                            f"{op} {bound}", "yes" if met else "NO"])
        checked.append({"scenario": f"{suite}/{scenario}", "subject": subject, "peer": peer,
                        "ratio": round(r, 4), "target": f"{op} {bound}", "met": met})
    blocks.append(table(["scenario", "subject", "compared with", "ratio", "target", "met"],
                        "lllrrc", target_rows))

    if errors:
        blocks.append(heading("Errors (these runs are not counted)"))
        blocks.append({"kind": "list", "items": list(errors)})
    return markdown(blocks), {"medians": medians, "runs": runs, "tails": tails,
                              "percentiles": percentiles, "targets": checked,
                              "target_rows": target_rows, "errors": errors, "blocks": blocks}


# --- writing a document of blocks: markdown and HTML -----------------------------
#
# A block is a dict with a "kind": heading (level, text), para (text), table
# (head, align, rows), list (items), pre (text), figure (path relative to the
# document, title, caption). report.md and report.html are the same blocks.

def markdown(blocks):
    out = []
    for n, b in enumerate(blocks):
        kind = b["kind"]
        if n and kind != "heading" and blocks[n - 1]["kind"] != "heading":
            out.append("")  # a blank line between two blocks (a heading brings its own)
        if kind == "heading":
            out.append(f"\n{'#' * b['level']} {b['text']}\n")
        elif kind == "para":
            out.append(b["text"])
        elif kind == "table":
            rule = {"l": "---", "r": "---:", "c": ":---:"}
            lines = ["| " + " | ".join(b["head"]) + " |",
                     "|" + "|".join(rule[a] for a in b["align"]) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in b["rows"]]
            out.append("\n".join(lines))
        elif kind == "list":
            out.append("\n".join(f"- {i}" for i in b["items"]))
        elif kind == "pre":
            out.append("```\n" + b["text"] + ("" if b["text"].endswith("\n") else "\n") + "```")
        elif kind == "figure":
            out.append(f"![{b['title']}]({b['path']})\n\n{b['caption']}")
    return "\n".join(out).lstrip("\n") + "\n"


HTML_STYLE = """
body { font-family: sans-serif; color: #1a1a1a; background: #fff; margin: 0 auto;
       max-width: 72rem; padding: 1rem 2rem 4rem; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #1a1a1a; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; }
nav { font-size: .95rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d0d0d0; padding: .22rem .6rem; }
th { background: #f0f0f0; }
tbody tr:nth-child(even) { background: #fafafa; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td.c, th.c { text-align: center; }
td.l, th.l { text-align: left; }
td.yes { color: #106b21; font-weight: bold; }
td.no { color: #b00020; font-weight: bold; }
figure { margin: 1.5rem 0 2.5rem; }
figure svg, figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: .92rem; color: #333; max-width: 60rem; margin-top: .3rem; }
figcaption b { color: #1a1a1a; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .85rem; }
code { font-size: .92em; }
"""


def inline_svg(text, prefix):
    """An SVG file's text, fit to sit inside an HTML page: no XML
    declaration, doctype or namespace declarations, and its ids (and the
    references to them) prefixed, so that two figures' ids never collide."""
    text = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    # An HTML parser puts <svg> and xlink:href in their namespaces itself.
    text = re.sub(r"""\s+xmlns(:xlink)?=(['"])[^'"]*\2""", "", text)
    text = re.sub(r"""\bid=(['"])""", lambda m: f"id={m.group(1)}{prefix}", text)
    text = re.sub(r"""(href=(['"]))#""", lambda m: f"{m.group(1)}#{prefix}", text)
    return re.sub(r"url\(#", f"url(#{prefix}", text)


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def html(blocks, title, base_dir, nav=True):
    """The blocks as one HTML page with nothing outside it: its style in the
    page, each figure's SVG inline (read from base_dir/path)."""
    def esc(text):
        """Escaped, and `code` as <code>, as markdown shows it."""
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", htmllib.escape(text))

    body, toc, figures, used = [], [], 0, set()

    def anchor_of(text):
        """A slug of text, made unique in the page (-2, -3, ...)."""
        base = slug(text) or "section"
        anchor, n = base, 1
        while anchor in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor)
        return anchor

    for b in blocks:
        kind = b["kind"]
        if kind == "heading" and b["level"] == 1:
            continue  # the page's title
        if kind == "heading":
            level = min(b["level"], 6)
            anchor = anchor_of(b["text"])
            if level == 2:
                toc.append((anchor, b["text"]))
            body.append(f'<h{level} id="{anchor}">{esc(b["text"])}</h{level}>')
        elif kind == "para":
            body.append(f"<p>{esc(b['text'])}</p>")
        elif kind == "table":
            head = "".join(f'<th class="{a}">{esc(c)}</th>' for c, a in zip(b["head"], b["align"]))
            rows = []
            for row in b["rows"]:
                cells = []
                for c, a in zip(row, b["align"]):
                    cls = a + (" yes" if c == "yes" else " no" if c == "NO" else "")
                    cells.append(f'<td class="{cls}">{esc(c)}</td>')
                rows.append("<tr>" + "".join(cells) + "</tr>")
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" +
                        "\n".join(rows) + "\n</tbody>\n</table>")
        elif kind == "list":
            body.append("<ul>\n" + "\n".join(f"<li>{esc(i)}</li>" for i in b["items"]) + "\n</ul>")
        elif kind == "pre":
            body.append(f"<pre>{htmllib.escape(b['text'])}</pre>")
        elif kind == "figure":
            figures += 1
            try:
                with open(f"{base_dir}/{b['path']}", encoding="utf-8") as f:
                    svg = inline_svg(f.read(), f"fig{figures}-")
            except OSError:
                svg = f'<p>(missing: {esc(b["path"])})</p>'
            path = htmllib.escape(b["path"])
            body.append(f'<figure id="{anchor_of("figure " + b["title"])}">\n{svg}\n'
                        f'<figcaption><b>{esc(b["title"])}.</b> {esc(b["caption"])} '
                        f'(<a href="{path}">{path}</a>)</figcaption>\n</figure>')
    links = ""
    if nav and toc:
        links = "<nav>" + " ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in toc) + "</nav>\n"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{htmllib.escape(title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{links}" + "\n".join(body) + "\n</body>\n</html>\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--markdown", help="also write the table here")
    ap.add_argument("--html", help="also write the tables here, as a page of their own")
    ap.add_argument("--baseline", default="iocm", help="the implementation ratios are taken for")
    args = ap.parse_args()
    text, info = render(args.results, args.baseline)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(html(info["blocks"], args.results, "."))
    return 2 if info["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
