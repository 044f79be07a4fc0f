"""The performance targets as same-run ratios: each target against the naive aiohttp proxy.

  python ratios.py results/<run>/results.jsonl [--yardstick aiohttp] [--baseline direct]

For every repeat, each figure of a target is divided by the yardstick's figure in the same
repeat (the targets of a repeat ran minutes apart on the same machine, so machine noise shared by
the repeat cancels out); the table shows the per-repeat ratios and their median. Figures:

* CPU per request at nonstream c=64 (proxy utime+stime per completed request);
* added p50 at nonstream c=1 (target p50 minus the direct floor's p50 in that repeat);
* TTFB p99 of 64 paced streams (50 chunks, 10 ms apart);
* peak RSS (absolute MiB, median over repeats).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from typing import Any

FIGURES = (
    ("CPU us/req, nonstream c=64", "nonstream", 64, "proxy_cpu_us_per_req", 0.40),
    ("added p50 ms, nonstream c=1", "nonstream", 1, "p50_ms", 0.80),
    ("TTFB p99 ms, stream 50x10ms c=64", "stream_50x10ms", 64, "ttfb_p99_ms", 0.60),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jsonl", nargs="+")
    parser.add_argument("--yardstick", default="aiohttp")
    parser.add_argument("--baseline", default="direct")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for path in args.jsonl:
        with open(path) as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    value: dict[tuple[str, str, str, int, str], float] = {}
    peak: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for _, scenario, conc, field, _limit in FIGURES:
            if row.get("scenario") == scenario and row.get("conc") == conc and row.get(field) is not None:
                value[(row["label"], str(row["run"]), scenario, conc, field)] = float(row[field])
        if row.get("proxy_peak_rss_mb") is not None and row.get("scenario") == "stream_50x10ms":
            peak[row["label"]].append(float(row["proxy_peak_rss_mb"]))
    labels = sorted({key[0] for key in value} - {args.baseline, args.yardstick})
    runs = sorted({key[1] for key in value}, key=int)
    print(f"ratios to {args.yardstick!r} in the same repeat (repeats {', '.join(runs)}); target limit in brackets\n")
    print("| target | figure | per-repeat ratios | median ratio | median figure | yardstick median |")
    print("|---|---|---|---|---|---|")
    for label in labels:
        print_target(label, runs, value, peak, args.yardstick, args.baseline)


def print_target(label: str, runs: list[str], value: dict[tuple[str, str, str, int, str], float],
                 peak: dict[str, list[float]], yardstick: str, baseline: str) -> None:
    for name, scenario, conc, field, limit in FIGURES:
        ratios, mine, theirs = [], [], []
        for run in runs:
            own = value.get((label, run, scenario, conc, field))
            other = value.get((yardstick, run, scenario, conc, field))
            if own is None or other is None:
                continue
            if field == "p50_ms":  # added latency: minus the floor of the same repeat
                floor = value.get((baseline, run, scenario, conc, field), 0.0)
                own, other = own - floor, other - floor
            mine.append(own)
            theirs.append(other)
            ratios.append(own / other if other else float("nan"))
        if not ratios:
            continue
        shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(f"| {label} | {name} | {shown} | **{statistics.median(ratios):.2f}** (≤ {limit}) | "
              f"{statistics.median(mine):.3g} | {statistics.median(theirs):.3g} |")
    if peak.get(label):
        theirs_peak = statistics.median(peak[yardstick]) if peak.get(yardstick) else float("nan")
        print(f"| {label} | peak RSS MiB | | | {statistics.median(peak[label]):.1f} (< 80) | {theirs_peak:.1f} |")


if __name__ == "__main__":
    main()
