"""How long MNN builds take here: native per target (on request) and one candidate, cold and warm.

    python appliance/benchmarks/mnn_build.py                 # candidate build on host: ccache-cold and -warm
    python appliance/benchmarks/mnn_build.py --native        # also clean native builds (minutes each)
    python appliance/benchmarks/mnn_build.py --target arm64  # the same for arm64

"Clean" native builds use a throwaway home and ccache disabled, so they measure the compiler, not
the cache. The candidate's cold build uses a source nobody compiled before (a unique comment makes
ccache miss); the warm build repeats it. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from mkbench import settings as settings_module
from mkbench.kinds.cpu_execution import REGISTRATION
from mkbench.mnn import build, inject

EXAMPLE = settings_module.SHIPPED / "mnn" / "examples" / "abs_candidate.cpp"


def clean_native(target: str) -> float:
    """Seconds for a native build from nothing (fresh build folder, ccache disabled)."""
    with tempfile.TemporaryDirectory(prefix="mkbench-bench-") as home:
        s = settings_module.load()
        fields = {f.name for f in dataclasses.fields(s)}
        changes = {"home": Path(home), **({"builds_dir": Path(home) / "builds"} if "builds_dir" in fields else {})}
        s = replace(s, **changes)
        previous = os.environ.get("CCACHE_DISABLE")
        os.environ["CCACHE_DISABLE"] = "1"
        try:
            started = time.monotonic()
            build.build_native(target, s)
            return time.monotonic() - started
        finally:
            if previous is None:
                os.environ.pop("CCACHE_DISABLE", None)
            else:
                os.environ["CCACHE_DISABLE"] = previous


def candidate(target: str) -> tuple[float, float]:
    """(cold, warm) seconds of one candidate build against the cached native build."""
    s = settings_module.load()
    build.build_native(target, s)  # make sure only the candidate is measured
    source = f"// {uuid.uuid4()}\n" + EXAMPLE.read_text()
    cold = inject.build_candidate(source, [("UnaryOp", "ABS")], target, "bench", s, REGISTRATION)
    warm = inject.build_candidate(source, [("UnaryOp", "ABS")], target, "bench", s, REGISTRATION)
    if not (cold.ok and warm.ok):
        raise SystemExit(f"candidate build failed: {cold.reason or warm.reason}")
    return cold.seconds, warm.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=build.TARGETS, action="append")
    parser.add_argument("--native", action="store_true", help="also time clean native builds (minutes)")
    args = parser.parse_args()
    for target in args.target or ["host"]:
        if args.native:
            print(f"{target}: clean native build {clean_native(target):.1f} s (cpus: {os.cpu_count()})", flush=True)
        cold, warm = candidate(target)
        print(f"{target}: candidate build {cold:.2f} s ccache-cold, {warm:.2f} s ccache-warm", flush=True)


if __name__ == "__main__":
    main()
