"""How noisy the judge's timing is: native MNN against itself for every judgeable task, with the
very protocol a candidate is timed with (judge/series.py: sandwiched runs timed by the guard,
repeated until the speedup's 95% interval is within ±3% or the timing budget is spent).

    python appliance/benchmarks/noise.py                      # every judgeable paper task, on the host
    python appliance/benchmarks/noise.py --task Softmax --task Exp
    python appliance/benchmarks/noise.py --device SERIAL --json floors.json

Prints one line per task (native/native speedup, its interval, runs, what stopped the series,
seconds spent), then: the share of tasks whose speedup is within 1% of 1.0 (goal >= 95%), the share
whose interval is narrower than ±3% (goal >= 90%), the time per task, and the widest floors. Also
checks each task's native time per iteration against the device's bandwidth bound (judge/bounds.py:
native MNN must never be "implausible").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mkbench import settings as settings_module
from mkbench.devices import get_device
from mkbench.judge import bounds, selftest, timing
from mkbench.mnn import build as mnn_build
from mkbench.tasks.spec import load_suite
from mkbench.judge.session import target_of


def summary(floors: list) -> None:
    """The figures issue #19 asks for, from measured floors (also from a --json file: --summarise)."""
    n = len(floors)
    # The series' own interval (a floor's band is widened to hold 1.0, so it cannot show a miss).
    intervals = [timing.interval(list(f.ratios)) for f in floors]
    spreads = [timing.spread(*interval) for interval in intervals]
    holds = sum(1 for _, low, high in intervals if low <= 1.0 <= high)
    within = sum(1 for f in floors if abs(f.speedup - 1.0) <= 0.01)
    within3 = sum(1 for f in floors if abs(f.speedup - 1.0) <= 0.03)
    narrow = sum(1 for f in floors if f.stopped_by == "precise")
    unstable = sum(1 for f, spread in zip(floors, spreads) if f.stopped_by != "precise" and spread > timing.UNSTABLE)
    seconds = [f.seconds for f in floors]
    print(f"interval holds 1.0:       {holds}/{n} = {100 * holds / n:.1f}% (a 95% interval: about 95%)")
    print(f"speedup within 1% of 1.0: {within}/{n} = {100 * within / n:.1f}% (goal >= 95%)")
    print(f"speedup within 3% of 1.0: {within3}/{n} = {100 * within3 / n:.1f}%")
    print(f"interval within ±3%:      {narrow}/{n} = {100 * narrow / n:.1f}% (goal >= 90%); "
          f"±3-10%: {n - narrow - unstable}; wider than ±10% (blocked as unstable): {unstable}")
    print(f"interval half-width: median {100 * statistics.median(spreads):.1f}%")
    print(f"seconds per task: median {statistics.median(seconds):.1f}, max {max(seconds):.1f}")
    widest = sorted(zip(spreads, floors, intervals), key=lambda x: -x[0])[:8]
    print("widest intervals: " + ", ".join(f"{f.task} {low:.3f}-{high:.3f}" for _, f, (_, low, high) in widest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=None, help="a task (default: every judgeable paper task)")
    parser.add_argument("--device", default="host")
    parser.add_argument("--json", type=Path, default=None, help="write every floor here too")
    parser.add_argument("--summarise", type=Path, default=None, help="print the figures of a --json file, measure nothing")
    args = parser.parse_args()
    if args.summarise:
        summary([selftest.NoiseFloor(**{**f, "ratios": tuple(f["ratios"])}) for f in json.loads(args.summarise.read_text())])
        return
    s = settings_module.load()
    device = get_device(args.device, s)
    tasks = [t for t in load_suite(s.tasks_dir, "paper")[0] if t.status.judgeable]
    if args.task:
        tasks = [t for t in tasks if t.name in args.task]
    curve = bounds.curve(device, mnn_build.build_native(target_of(device), s).bandwidth)
    floors, below_bound, failed = [], [], []
    started = time.monotonic()
    for task in tasks:
        try:
            floor = selftest.measure(task, device, s)
        except Exception as error:  # noqa: BLE001 - one task's failure is reported, the rest still measured
            failed.append((task.name, str(error)[:160]))
            print(f"{task.name:28s} FAILED: {str(error)[:160]}", flush=True)
            continue
        bound = bounds.bound_ms(curve, bounds.task_bytes(task))
        if bound and floor.median_ms < bounds.SLACK * bound:  # native would trip the implausible flag
            below_bound.append((task.name, floor.median_ms, bound))
        floors.append(floor)
        _, low, high = timing.interval(list(floor.ratios))
        print(f"{task.name:28s} {floor.speedup:.4f} [{low:.4f}, {high:.4f}] {floor.pairs:2d} runs "
              f"({floor.stopped_by}) {floor.seconds:5.1f}s  native {floor.median_ms:.4g} ms, bound {bound:.3g} ms", flush=True)
    if not floors:
        return
    print(f"\n{len(floors)} tasks on {device.serial} in {time.monotonic() - started:.0f} s; {len(failed)} failed")
    summary(floors)
    print(f"native below {bounds.SLACK} x the bandwidth bound (must be 0): {len(below_bound)}" + "".join(
        f"\n  {name}: {ms:.4g} ms, bound {bound:.4g} ms" for name, ms, bound in below_bound))
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in floors], indent=1, default=list))


if __name__ == "__main__":
    main()
