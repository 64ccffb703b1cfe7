"""What one candidate evaluation costs, and how noisy the host's timings are.

    python appliance/benchmarks/judge.py                # 3 evaluations of the example Abs kernel + noise floor
    python appliance/benchmarks/judge.py --pairs 20     # native-vs-native pairs per task (default 20)

Prints the time of each evaluation split into build / deploy / run / compare (target: under
10 s on 2 cores, build included), then native MNN timed against itself on the host: the
speedup must centre on 1.0, and its spread is the noise floor a real speedup must clear.
"""

from __future__ import annotations

import argparse
import time

from mkbench import settings as settings_module
from mkbench.devices import get_device
from mkbench.judge import selftest
from mkbench.judge.evaluate import evaluate
from mkbench.tasks import get_task

EXAMPLE = settings_module.REPO_ROOT / "mnn" / "examples" / "abs_candidate.cpp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--task", action="append", default=None, help="tasks for the noise floor")
    args = parser.parse_args()
    host = get_device("host")
    source = EXAMPLE.read_text()
    task = get_task("Abs")
    for index in range(args.evaluations):
        started = time.monotonic()
        # A unique comment makes the first build ccache-cold; later ones reuse the worker's build.
        verdict = evaluate(task, source + f"\n// evaluation {index}\n" * (index == 0), host)
        total = time.monotonic() - started
        stages = "  ".join(f"{k} {v:.2f}s" for k, v in verdict.stage_seconds.items())
        print(f"evaluation {index + 1}: {verdict.verdict}, total {total:.2f}s  ({stages})  speedup {verdict.speedup:.3f}")
    for name in args.task or ["Softmax", "Exp"]:
        floor = selftest.measure(get_task(name), host, pairs=args.pairs)
        print(f"native vs native, {name}: median ratio {floor.speedup:.3f}, per-pair {floor.low:.3f}-{floor.high:.3f} "
              f"over {floor.pairs} pairs ({floor.median_ms:.3f} ms per run iteration)")


if __name__ == "__main__":
    main()
