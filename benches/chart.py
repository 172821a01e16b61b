#!/usr/bin/env python3
"""Draws the README's performance chart from the output of the peer harness's `compare`.

    ../shared/bench/compare all -- build/release/benches/async_io_bench > compare.txt
    python3 benches/chart.py compare.txt > benches/results/compare.svg

Reads the per-workload tables ("## WORKLOAD", a header line, one row per program) and draws,
for each workload, one bar per program: its median throughput as a fraction of the epoll limit
(the x_epoll column), with the candidate (async_io) highlighted. A second panel shows peak RSS
for the workloads whose memory the targets bound (timers, c10k). Plain SVG, no dependencies
beyond Python 3.
"""
import html
import re
import sys

COLORS = {
    "epoll": "#9e9e9e",
    "rust-async-io": "#d2691e",
    "asio": "#4a7ebb",
    "libuv": "#6aa84f",
    "async_io (candidate)": "#c62828",
}


def parse(text):
    """Returns [(workload, [(impl, median, rss_kb, x_epoll)])] in the order of the output."""
    tables = []
    current = None
    for line in text.splitlines():
        m = re.match(r"^## (.+)$", line)
        if m:
            current = (m.group(1).strip(), [])
            tables.append(current)
            continue
        if current is None or not line.strip() or line.startswith(("#", "impl")):
            continue
        # impl may contain one space ("async_io (candidate)"); the 7 numeric columns follow.
        m = re.match(r"^(.+?)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            current[1].append((m.group(1).strip(), int(m.group(2)), int(m.group(6)), float(m.group(7))))
        elif not line.startswith("workload"):
            current = None  # the closing matrix or anything else: stop reading this table
    return [t for t in tables if t[1]]


def bar_panel(out, x0, y0, width, tables, value, label, scale_max, fmt):
    """One panel of horizontal bar groups; returns the y below it."""
    bar_h, gap = 14, 10
    label_w = 190
    out.append(f'<text x="{x0}" y="{y0}" font-size="14" font-weight="bold">{html.escape(label)}</text>')
    y = y0 + 14
    plot_w = width - label_w - 70
    for workload, rows in tables:
        out.append(f'<text x="{x0}" y="{y + 12}" font-size="12" font-weight="bold">{html.escape(workload)}</text>')
        y += 18
        for impl, median, rss, x_epoll in rows:
            v = value(median, rss, x_epoll)
            w = max(1.0, plot_w * min(v, scale_max) / scale_max)
            color = COLORS.get(impl, "#777")
            out.append(f'<text x="{x0 + 8}" y="{y + 11}" font-size="11">{html.escape(impl)}</text>')
            out.append(f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
            out.append(f'<text x="{x0 + label_w + w + 4:.1f}" y="{y + 11}" font-size="11">{fmt(v)}</text>')
            y += bar_h + 3
        y += gap
    return y


def main():
    text = open(sys.argv[1]).read() if len(sys.argv) > 1 else sys.stdin.read()
    tables = parse(text)
    if not tables:
        sys.exit("chart.py: no compare tables found in the input")
    width = 760
    out = []
    y = bar_panel(out, 10, 24, width, tables, lambda m, r, x: x,
                  "Throughput, x the epoll limit (median; 1.00 = as fast as hand-written epoll)", 1.2,
                  lambda v: f"{v:.2f}")
    memory = [(w, rows) for w, rows in tables if w.split()[0] in ("timers", "c10k")]
    if memory:
        top = max(r for _, rows in memory for _, _, r, _ in rows)
        y = bar_panel(out, 10, y + 16, width, memory, lambda m, r, x: r / 1024.0,
                      "Peak RSS, MiB (lower is better)", top / 1024.0 * 1.05, lambda v: f"{v:,.1f}")
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" '
           f'font-family="DejaVu Sans, Arial, sans-serif">',
           f'<rect width="{width}" height="{y + 10}" fill="white"/>'] + out + ["</svg>"]
    print("\n".join(svg))


if __name__ == "__main__":
    main()
