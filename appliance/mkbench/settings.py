"""Paths, pins and defaults, in one place, read once from the environment.

`load()` is called at the edge only (the CLI, a benchmark script, a test's fixture) and the
Settings it returns are passed down: no library module reads the environment for them, so a
test points the whole appliance at a temporary home by handing it other Settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import platformdirs

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_TASKS = REPO_ROOT / "tasks"  # the task suites that ship with mkbench

# The MNN release the judge is pinned to (see mnn/pin.toml for the source of truth).
MNN_TAG = "3.6.1"
MNN_COMMIT = "d407447ed56c4121a11ccbd266dc184ca1ead0c2"


# MNN runtime hints the judge sets, the same for native and candidate, and records with
# every verdict. WINOGRAD_MEMORY_LEVEL=0: at MNN's default level 3x3 convolutions deviate
# from ONNX by up to 2e-3 (MNN-NOTES); at 0 they agree to ~1e-6.
JUDGE_HINTS = {"WINOGRAD_MEMORY_LEVEL": 0}
# Interpreter::HintMode values in MNN 3.6.1's include/MNN/Interpreter.hpp.
MNN_HINT_IDS = {"WINOGRAD_MEMORY_LEVEL": 3, "GEOMETRY_COMPUTE_MASK": 4}
JUDGE_PRECISION = "high"  # fp32 everywhere; Low would hand fp16 tensors to kernels on ARM
JUDGE_THREADS = 1


@dataclass(frozen=True)
class Settings:
    """Where mkbench keeps its data and where it finds its inputs."""

    home: Path  # MKBENCH_HOME: database, builds, models, caches
    tasks_dir: Path  # the task spec files (the repo's tasks/ folder)
    mnn_src: Path | None  # MKBENCH_MNN_SRC: the pinned MNN tree (dir or tarball)
    ndk_home: Path | None  # ANDROID_NDK_HOME: preferred arm64 toolchain when set
    models_dir: Path  # MKBENCH_MODELS: GGUF files and their registry
    builds_dir: Path  # MKBENCH_BUILDS: MNN builds and candidate workspaces (shareable cache)
    sandbox: bool = True  # MKBENCH_SANDBOX=off: untrusted code runs unjailed (recorded with every verdict)
    threads: int = JUDGE_THREADS  # MKBENCH_THREADS: threads of MNN's CPU backend, the same for both sides (recorded)
    timing_budget: float = 15.0  # MKBENCH_TIMING_BUDGET: seconds of timed runs an evaluation may add for precision

    @property
    def db_path(self) -> Path:
        return self.home / "mkbench.sqlite"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def work_dir(self) -> Path:
        """Where candidates are built and worked on: under the data folder, never beside the
        native builds (which an appliance image ships read-only, outside its data volume)."""
        return self.home / "work"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment (at the edge: the CLI, a script, a test), or from
    the mapping given."""
    env = os.environ if environ is None else environ

    def path(name: str) -> Path | None:
        return Path(env[name]).expanduser() if env.get(name) else None

    home = path("MKBENCH_HOME") or Path(platformdirs.user_data_dir("mkbench"))
    return Settings(
        home=home,
        tasks_dir=path("MKBENCH_TASKS") or BUILTIN_TASKS,
        mnn_src=path("MKBENCH_MNN_SRC"),
        ndk_home=path("ANDROID_NDK_HOME"),
        models_dir=path("MKBENCH_MODELS") or home / "models",
        builds_dir=path("MKBENCH_BUILDS") or home / "builds",
        sandbox=env.get("MKBENCH_SANDBOX", "on").strip().lower() not in ("off", "0", "no", "false"),
        threads=_positive(env, "MKBENCH_THREADS", JUDGE_THREADS, int),
        timing_budget=_positive(env, "MKBENCH_TIMING_BUDGET", 15.0, float),
    )


def _positive(env: Mapping[str, str], name: str, default, kind):
    """A positive number from the environment, or the default; a bad value is a one-line error."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive number, got {text!r}")
    return value
