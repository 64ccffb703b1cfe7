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
from mkbench.judge import bounds, selftest
from mkbench.mnn import build as mnn_build
from mkbench.tasks.spec import load_suite
from mkbench.judge.session import target_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", default=None, help="a task (default: every judgeable paper task)")
    parser.add_argument("--device", default="host")
    parser.add_argument("--json", type=Path, default=None, help="write every floor here too")
    args = parser.parse_args()
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
        print(f"{task.name:28s} {floor.speedup:.4f} [{floor.low:.4f}, {floor.high:.4f}] {floor.pairs:2d} runs "
              f"({floor.stopped_by}) {floor.seconds:5.1f}s  native {floor.median_ms:.4g} ms, bound {bound:.3g} ms", flush=True)
    if not floors:
        return
    within = sum(1 for f in floors if abs(f.speedup - 1.0) <= 0.01)
    narrow = sum(1 for f in floors if f.stopped_by == "precise")
    seconds = [f.seconds for f in floors]
    print(f"\n{len(floors)} tasks on {device.serial} in {time.monotonic() - started:.0f} s; {len(failed)} failed")
    print(f"speedup within 1% of 1.0: {within}/{len(floors)} = {100 * within / len(floors):.1f}% (goal >= 95%)")
    print(f"interval within ±3%:      {narrow}/{len(floors)} = {100 * narrow / len(floors):.1f}% (goal >= 90%)")
    print(f"seconds per task: median {statistics.median(seconds):.1f}, max {max(seconds):.1f}")
    print("widest floors: " + ", ".join(f"{f.task} {f.low:.3f}-{f.high:.3f}"
                                        for f in sorted(floors, key=lambda f: f.low - f.high)[:8]))
    print(f"native below {bounds.SLACK} x the bandwidth bound (must be 0): {len(below_bound)}" + "".join(
        f"\n  {name}: {ms:.4g} ms, bound {bound:.4g} ms" for name, ms, bound in below_bound))
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in floors], indent=1, default=list))


if __name__ == "__main__":
    main()
