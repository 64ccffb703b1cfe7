"""Where the judge's timing noise comes from on a device, and what other estimators would make of it.

    python appliance/benchmarks/timing_estimators.py record runs.json          # 24 judgeable tasks, 12 pairs each
    python appliance/benchmarks/timing_estimators.py record runs.json --tasks 8 --pairs 12 --task Softmax
    python appliance/benchmarks/timing_estimators.py analyse runs.json         # offline: no device needed

`record` times native MNN against itself with the judge's own series (judge/series.py: sandwiched
runs, the twin in the candidate's place) for a fixed number of pairs, and keeps every run's
figures: the guard's median (what the judge uses), and percentiles of the runner's own times of
its timed iterations. Both sides are native MNN, so the runner's clock can be read here; for a
candidate it never is (judge/timing.py). Recordings made here are in appliance/benchmarks/results/.

`analyse` answers two questions from such a recording:
- Is the noise a property of processes or of time? For each run, the 10th percentile of its
  iterations (its "quiet" speed) against the task's quietest run: a run whose quiet speed is
  well above the best ran wholly in a slow state, which no statistic inside one run can undo.
- What would other estimators say? Per-run figure (the guard's median, the runner's median,
  25th and 10th percentile, minimum) crossed with the aggregate (today's geometric mean of
  sandwiched ratios with Student's t interval; the median of the ratios with its distribution-free
  order-statistic interval), after 6 and 12 pairs: the share of tasks whose estimate is within
  1% of 1.0 and whose 95% interval is within ±3% (issue #19's goals: 95% and 90%).

A low percentile is not free: the judge's figure of a candidate would then come from its fastest
tenth of iterations, so a kernel that skips work in a tenth of them would gain, where today it must
skip in half (and each run's last iterations, drawn by the guard, are checked). This script
measures the statistics only; it changes nothing in the judge.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from math import comb
from pathlib import Path

from mkbench.judge import timing

PER_RUN = (("guard median (today)", "guard"), ("runner median", 0.5), ("runner p25", 0.25),
           ("runner p10", 0.10), ("runner min", 0.0))
SLOW_STATE = 1.05  # a run whose 10th percentile is this far above the task's quietest ran wholly slow


def record(path: Path, count: int, pairs: int, names: list[str], seed: int) -> None:
    from mkbench import settings as settings_module
    from mkbench.devices import get_device
    from mkbench.judge import selftest
    from mkbench.tasks.spec import load_suite

    settings = settings_module.load()
    device = get_device("host", settings)
    judgeable = [t for t in load_suite(settings.tasks_dir, "paper")[0] if t.status.judgeable]
    tasks = [t for t in judgeable if t.name in names] if names else random.Random(seed).sample(judgeable, count)
    recorded = {}
    for task in tasks:
        try:
            _, runs = selftest.twin_series(task, device, settings, pairs)  # the same series as noise.py's
            recorded[task.name] = [{"label": r.label, "guard_ms": r.run_ms, "iterations": r.iterations,
                                    "quantiles_ms": quantiles(r.times_ms)} for r in runs[1:]]
            print(f"{task.name}: {len(runs) - 1} runs", flush=True)
        except Exception as error:  # noqa: BLE001 - one task's failure is reported, the rest still recorded
            print(f"{task.name}: FAILED {str(error)[:160]}", flush=True)
    path.write_text(json.dumps({"device": device.serial, "pairs": pairs, "tasks": recorded}))


def quantiles(times_ms: list[float]) -> dict[str, float]:
    """What the analysis reads of a run's iteration times (all of them would be hundreds of MB)."""
    ordered = sorted(times_ms)
    return {str(q): ordered[int(len(ordered) * q)] for _, q in PER_RUN if q != "guard"}


def per_run(run: dict, which) -> float:
    return run["guard_ms"] if which == "guard" else run["quantiles_ms"][str(which)]


def median_interval(ratios: list[float]) -> tuple[float, float, float]:
    """The median of the ratios and its distribution-free 95% interval: the order statistics
    (k, n+1-k) for the largest k whose binomial tails leave at least 95% between them."""
    ordered = sorted(ratios)
    n = len(ordered)
    centre = statistics.median(ordered)
    k = 0
    for candidate in range(1, n // 2 + 1):
        if 2 * sum(comb(n, i) for i in range(candidate)) / 2 ** n <= 0.05:
            k = candidate
    return (centre, 0.0, math.inf) if k == 0 else (centre, ordered[k - 1], ordered[n - k])


def analyse(path: Path) -> None:
    data = json.loads(path.read_text())
    tasks = data["tasks"]
    print(f"{len(tasks)} tasks, {data['pairs']} pairs each, on {data['device']}\n")
    slow, total, worst = 0, 0, []
    for name, runs in tasks.items():
        quiet = [per_run(r, 0.10) for r in runs]
        best = min(quiet)
        slow_here = sum(1 for q in quiet if q > SLOW_STATE * best)
        slow, total = slow + slow_here, total + len(quiet)
        worst.append((max(quiet) / best, name))
    print(f"runs whose 10th percentile is over {SLOW_STATE:.2f}x their task's quietest run: {slow}/{total} "
          f"({100 * slow / total:.0f}%); largest: " + ", ".join(f"{n} {w:.2f}x" for w, n in sorted(worst)[-5:]))
    print("\nper-run figure            aggregate                          pairs  within 1%  interval ±3%  half-width (median)")
    for label, which in PER_RUN:
        for aggregate, summarise in (("geometric mean, t interval (today)", timing.interval),
                                     ("median, order-statistic interval", median_interval)):
            for pairs in sorted({6, data["pairs"]}):
                within = narrow = 0
                widths = []
                for runs in tasks.values():
                    natives = [per_run(r, which) for r in runs if r["label"] == "native"]
                    twins = [per_run(r, which) for r in runs if r["label"] == "twin"]
                    ratios = [0.5 * (natives[i] + natives[i + 1]) / twins[i] for i in range(min(pairs, len(twins)))]
                    centre, low, high = summarise(ratios)
                    within += abs(centre - 1.0) <= 0.01
                    narrow += low >= centre * (1 - timing.PRECISION) and high <= centre * (1 + timing.PRECISION)
                    widths.append((high - low) / 2 / centre)
                n = len(tasks)
                print(f"{label:25s} {aggregate:34s} {pairs:5d}  {100 * within / n:8.0f}%  {100 * narrow / n:11.0f}%  "
                      f"{100 * statistics.median(widths):8.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="time native against its twin on the host and keep every run")
    rec.add_argument("path", type=Path)
    rec.add_argument("--tasks", type=int, default=24, help="how many judgeable tasks, drawn with --seed")
    rec.add_argument("--seed", type=int, default=1)
    rec.add_argument("--pairs", type=int, default=12)
    rec.add_argument("--task", action="append", default=[], help="these tasks instead of a draw")
    ana = sub.add_parser("analyse", help="what the estimators make of a recording")
    ana.add_argument("path", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        record(args.path, args.tasks, args.pairs, args.task, args.seed)
    analyse(args.path)


if __name__ == "__main__":
    main()
