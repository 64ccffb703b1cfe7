"""What a reader needs to reproduce a run, recorded when it starts; and the fingerprint of the
generators' code and prompts, which a resume must find unchanged."""

from __future__ import annotations

import hashlib
import platform
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from .. import settings as settings_module
from ..agents import Budget
from ..devices import Device, device_id
from ..judge import evaluate as judge_evaluate
from ..judge import series as judge_series
from ..judge import session as judge_session
from ..judge import timing
from ..mnn import build as mnn_build
from ..mnn import toolchain as mnn_toolchain
from ..mnn import tree as mnn_tree
from ..tasks import Task, suite_hash
from .config import RunConfig

def generators_fingerprint() -> str:
    """sha256 over the generators' code and prompt templates (agents/) and the kinds' prompt texts,
    scaffold templates and code (kinds/): a resumed run must not mix attempts written with different prompts."""
    package = Path(__file__).parents[1]
    digest = hashlib.sha256()
    for root in (package / "agents", package / "kinds"):
        for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".md", ".cpp") and "__pycache__" not in p.parts):
            digest.update(f"{path.relative_to(package).as_posix()}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def provenance(config: RunConfig, tasks: list[Task], devices: list[Device], backend, settings: settings_module.Settings) -> dict:
    """What a reader needs to reproduce the run: versions, MNN, toolchains and flags, model, devices, suite."""
    record: dict[str, Any] = {
        "mkbench_version": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.node(), "argv": sys.argv,
        "suite": {"name": config.suite, "hash": suite_hash(tasks), "tasks": len(tasks)},
        "judge": {"threads": settings.threads, "precision": settings_module.JUDGE_PRECISION,
                  "hints": settings_module.JUDGE_HINTS, "target_run_ms": judge_evaluate.TARGET_RUN_MS,
                  "protocol": judge_evaluate.PROTOCOL, "precision_goal": timing.PRECISION,
                  "timing_budget_s": settings.timing_budget, "min_runs": judge_series.MIN_RUNS,
                  "max_runs": judge_series.MAX_RUNS, "implausible_speedup": timing.IMPLAUSIBLE_SPEEDUP,
                  "sandbox": settings.sandbox},
        "budget": asdict(Budget(**config.budget)),
        "generators": {"sha256": generators_fingerprint()},
    }
    try:
        tree = mnn_tree.open_tree(settings)
        record["mnn"] = {"tag": settings_module.MNN_TAG, "commit": settings_module.MNN_COMMIT, "tree": str(tree.path),
                         "tree_fingerprint": tree.fingerprint, "matches_pin": tree.matches_pin, "options": mnn_build.MNN_OPTIONS}
    except Exception as error:  # a missing tree is the judge's to report; the run records what it saw
        tree = None
        record["mnn"] = {"tag": settings_module.MNN_TAG, "commit": settings_module.MNN_COMMIT, "error": str(error)}
    record["toolchains"] = {}
    for target in sorted({judge_session.target_of(d) for d in devices}):
        try:
            tc = mnn_toolchain.toolchain(target, settings)
            record["toolchains"][target] = {
                "name": tc.name, "identity": tc.identity, "cmake_args": list(tc.cmake_args), "link_flags": list(tc.link_flags),
                "link_libs": list(tc.link_libs), "library_key": mnn_build.library_key(tc, tree.fingerprint) if tree else None}
        except Exception as error:
            record["toolchains"][target] = {"error": str(error)}
    record["model"] = None if backend is None else {
        "backend": backend.name, "model": backend.model, "sha256": backend.model_sha256,
        "context_length": backend.context_length, "sampling": asdict(backend.sampling), "config": config.model}
    record["devices"] = {d.serial: {"id": device_id(d), "fingerprint": d.fingerprint()} for d in devices}
    return record
