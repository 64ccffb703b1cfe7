"""What one candidate evaluation costs, per kind of kernel, and how noisy the host's timings are.

    python appliance/benchmarks/judge.py                # 3 evaluations per kind + two noise floors
    python appliance/benchmarks/judge.py --pairs 8      # a fixed number of twin runs per floor

Prints the time of each evaluation split into build / convert / deploy / run / compare for one
example kernel of each kind: a CPU execution (Abs), a geometry computer (Reshape) and a converter
transform (Softplus, whose "build" is linking a converter with the candidate inside and whose
"convert" is converting the task with it), with the number of timed candidate runs and what
stopped the series (judge/series.py). The evaluations have no store, so no noise floor is measured
inside them (a run measures it once per device, task and settings). Then native MNN timed against
itself on the host with the same series: the speedup must centre on 1.0, and its interval is the
noise floor a real speedup must clear.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from mkbench import settings as settings_module
from mkbench.devices import get_device
from mkbench.judge import selftest
from mkbench.judge.evaluate import evaluate
from mkbench.tasks import get_task
from mkbench.tasks.spec import MnnTarget

EXAMPLES = settings_module.SHIPPED / "mnn" / "examples"
# (kind, task, example kernel); the composite task is Softplus_2d judged as a converter transform.
KINDS = (("cpu-execution", "Abs", "abs_candidate.cpp"), ("geometry", "Reshape", "reshape_geometry.cpp"),
         ("composite", "Softplus_2d", "softplus_composite.cpp"))


def _as_kind(task, kind: str):
    if task.mnn.kind == kind:
        return task
    targets = (("Softplus", None),) if kind == "composite" else task.mnn.targets
    return replace(task, mnn=MnnTarget(kind, targets, task.mnn.converted_ops, {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=None, help="twin runs per floor (default: until precise or the budget)")
    parser.add_argument("--task", action="append", default=None, help="tasks for the noise floor")
    args = parser.parse_args()
    s = settings_module.load()
    host = get_device("host", s)
    for kind, task_name, example in KINDS:
        source = (EXAMPLES / example).read_text()
        task = _as_kind(get_task(task_name), kind)
        for index in range(args.evaluations):
            started = time.monotonic()
            # A unique comment makes the first build ccache-cold; later ones reuse the worker's build.
            verdict = evaluate(task, source + f"\n// evaluation {index}\n" * (index == 0), host, s)
            total = time.monotonic() - started
            stages = "  ".join(f"{k} {v:.2f}s" for k, v in verdict.stage_seconds.items())
            speedup = f"{verdict.speedup:.3f} [{verdict.speedup_low:.3f}-{verdict.speedup_high:.3f}]" if verdict.speedup else "-"
            print(f"{kind} {task_name} evaluation {index + 1}: {verdict.verdict}, total {total:.2f}s  ({stages})  "
                  f"speedup {speedup}, {verdict.timing_runs} runs ({verdict.timing_stopped_by})", flush=True)
    for name in args.task or ["Softmax", "Exp"]:
        floor = selftest.measure(get_task(name), host, s, pairs=args.pairs)
        print(f"native vs native, {name}: {floor.speedup:.4f}, band {floor.low:.4f}-{floor.high:.4f} over {floor.pairs} "
              f"runs ({floor.stopped_by}, {floor.seconds:.1f} s; {floor.median_ms:.4g} ms per iteration)")


if __name__ == "__main__":
    main()
