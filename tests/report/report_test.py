#!/usr/bin/env python3
"""iocm-bench's report from a committed results directory, without running
a benchmark: `iocm-bench report --from tests/data/bench-results --out TMP`,
then checks what it wrote.

- report.html parses (html.parser), every table expected is there with
  rows, and its rows are report.md's, cell for cell;
- every figure expected is in it as an inline <svg> (or an <img> whose file
  exists), each plots/*.svg parses as XML, and no two ids of the page clash;
- nothing in the page loads from the network: no http:// or https:// at all;
- the latency figure's x axis is the log tail axis (50% ... 99.99%), the
  queue figure is the ratio to iocm.

Without gnuplot (scripts/setup installs gnuplot-nox) it checks the tables,
then skips (exit 77), saying that the figures were not checked.

  report_test.py IOCM_BENCH RESULTS_DIR
"""
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

# Headings of the tables the fixture must give (a heading starts with one of these).
TABLES = ["Targets", "queue/spsc_single", "queue/spsc_bulk32", "queue/mpsc_2x1", "queue/mpmc_2x2",
          "queue/mpmc_4x4", "queue/single_thread", "queue/pingpong", "engine/nop", "engine/post",
          "engine/post_latency", "Latency percentiles", "engine/file_randread_qd1",
          "engine/file_randread_qd16", "engine/file_randread_qd64", "engine/echo_c1",
          "engine/echo_c16", "engine/echo_c64", "net/plaintext ", "net/plaintext_pipelined",
          "net/plaintext_cpu", "net/plaintext_latency", "net/plaintext_p99"]
FIGURES = ["file_randread", "echo", "queue", "dispatch", "plaintext", "latency"]
XLINK = "http://www.w3.org/1999/xlink"


class Page(html.parser.HTMLParser):
    """The tables (heading, header cells, rows of cells), the figures (their
    inline svg text or img src), every id and every attribute value."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0]
        for line in text.splitlines(True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.tables, self.figures, self.ids, self.values, self.tags = [], [], [], [], []
        self.heading, self.in_heading, self.cell, self.row = "", False, None, None
        self.figure, self.svg_start = None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            self.values.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value)
        if tag in ("h2", "h3"):
            self.heading, self.in_heading = "", True
        elif tag == "table":
            self.tables.append({"heading": self.heading, "head": [], "rows": []})
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "figure":
            self.figure = {"svg": None, "img": None}
            self.figures.append(self.figure)
        elif tag == "svg" and self.figure is not None and self.svg_start is None:
            self.svg_start = self.position()
        elif tag == "img" and self.figure is not None:
            self.figure["img"] = dict(attrs).get("src")

    def handle_endtag(self, tag):
        if tag in ("h2", "h3"):
            self.in_heading = False
        elif tag in ("td", "th") and self.row is not None:
            self.row.append(self.cell.strip())
            self.cell = None
        elif tag == "tr" and self.tables:
            if self.row and all(c is not None for c in self.row):
                table = self.tables[-1]
                if not table["head"]:
                    table["head"] = self.row
                else:
                    table["rows"].append(self.row)
            self.row = None
        elif tag == "svg" and self.svg_start is not None and self.figure is not None:
            end = self.text.index(">", self.position()) + 1
            self.figure["svg"] = self.text[self.svg_start:end]
            self.svg_start = None
        elif tag == "figure":
            self.figure = None

    def handle_data(self, data):
        if self.in_heading:
            self.heading += data
        if self.cell is not None:
            self.cell += data

    def position(self):
        """Where in the text the tag being handled starts."""
        line, col = self.getpos()
        return self.line_starts[line - 1] + col


def markdown_rows(text):
    """The rows of every table in a markdown text, header rows included."""
    rows = []
    for line in text.splitlines():
        if line.startswith("| ") and not re.fullmatch(r"\|(:?-+:?\|)+", line):
            rows.append([c.strip() for c in line.strip()[1:-1].split(" | ")])
    return rows


def main(bench, fixture):
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)
            print(f"FAIL: {what}")

    out = tempfile.mkdtemp(prefix="iocm-report-test-")
    try:
        r = subprocess.run([bench, "report", "--from", fixture, "--out", out],
                           capture_output=True, text=True)
        print(r.stdout + r.stderr, end="")
        have_gnuplot = shutil.which("gnuplot") is not None
        check(r.returncode == (0 if have_gnuplot else 1), f"iocm-bench report exited {r.returncode}")
        for name in ("report.md", "report.html", "summary.json"):
            check(os.path.exists(os.path.join(out, name)), f"{name} was not written")
        if failures:
            return 1
        with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
            text = f.read()
        with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
            md = f.read()
        page = Page(text)

        # Well-formed enough: one html, head, body; every table complete.
        for tag in ("html", "head", "body"):
            check(page.tags.count(tag) == 1, f"report.html has {page.tags.count(tag)} <{tag}>")
        check(re.search(r"<head>.*<title>[^<]+</title>.*</head>", text, re.S), "report.html has no title")
        for want in TABLES:
            found = [t for t in page.tables if t["heading"].strip().startswith(want.rstrip())
                     and (not want.endswith(" ") or t["heading"].startswith(want))]
            check(found, f"no table under a heading '{want.strip()}'")
            for t in found:
                check(t["rows"], f"the table '{t['heading']}' has no rows")
                check(all(len(r) == len(t["head"]) for r in t["rows"]),
                      f"the table '{t['heading']}' has rows of another width than its head")
        html_rows = [r for t in page.tables for r in [t["head"]] + t["rows"]]
        check(html_rows == markdown_rows(md),
              "report.html's tables are not report.md's, row for row")

        # Nothing from the network: not in an attribute, a style, anywhere.
        for tag, name, value in page.values:
            check(not re.match(r"\s*(https?:)?//", value), f"<{tag} {name}=\"{value}\"> is remote")
        check(not re.search(r"https?://", text), "report.html names an http(s):// address")
        check("<script" not in text and "<link" not in text, "report.html loads a script or a stylesheet")
        check(len(page.ids) == len(set(page.ids)), "report.html has an id twice")

        if not have_gnuplot:
            check("gnuplot is not installed" in md, "report.md does not say why it has no figures")
            if failures:
                return 1
            print("SKIPPED: gnuplot is not installed (scripts/setup installs gnuplot-nox): "
                  "the tables were checked, the figures were not")
            return 77

        # The figures: inline, and each file a well-formed SVG.
        check(len(page.figures) == len(FIGURES),
              f"report.html has {len(page.figures)} figures, not {len(FIGURES)}")
        svgs = {}
        for name in FIGURES:
            path = os.path.join(out, "plots", name + ".svg")
            check(os.path.exists(path), f"plots/{name}.svg was not drawn")
            if not os.path.exists(path):
                continue
            try:
                svgs[name] = ET.tostring(ET.parse(path).getroot(), encoding="unicode")
            except ET.ParseError as e:
                check(False, f"plots/{name}.svg is not XML: {e}")
            check(f'href="plots/{name}.svg"' in text, f"report.html does not show plots/{name}.svg")
        for n, fig in enumerate(page.figures):
            if fig["img"] is not None:
                check(os.path.exists(os.path.join(out, fig["img"])), f"<img src={fig['img']}> is missing")
                continue
            check(fig["svg"] is not None, f"figure {n + 1} has neither an inline <svg> nor an <img>")
            if fig["svg"]:
                try:  # the page leaves namespaces to the HTML parser; XML wants them named
                    ET.fromstring(fig["svg"].replace("<svg", f'<svg xmlns:xlink="{XLINK}"', 1))
                except ET.ParseError as e:
                    check(False, f"figure {n + 1}'s inline <svg> is not XML: {e}")

        # What the figures must show.
        latency = svgs.get("latency", "")
        for tick in ("50%", "90%", "99%", "99.9%", "99.99%"):
            check(f">{tick}<" in latency, f"the latency figure has no tick '{tick}'")
        queue = svgs.get("queue", "")
        check("iocm" in queue and "÷ iocm" in queue, "the queue figure is not the ratio to iocm")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print(f"report.html: {len(page.tables)} tables, {len(page.figures)} inline figures; all checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
