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

PACKAGED = Path(__file__).resolve().parent / "shipped"  # where a wheel carries the shipped folders


def shipped_root() -> Path:
    """The folder that holds what ships with mkbench beside its code: `tasks/` (the suites and run
    configs), `mnn/` (the pin, the runner, the worked examples), `models/` (the manifest), `ndk/`.

    In a source checkout, and in an editable install of one, that is the checkout itself, two
    levels above this package. A wheel (a regular install, as in the appliance image) carries a
    copy of those four folders inside the package, as `mkbench/shipped/`, which `setup.py` puts
    there when the wheel is built. One rule, no configuration: the packaged copy when it exists,
    else the checkout. The packaged copy is read-only to mkbench (see `in_package`)."""
    return PACKAGED if PACKAGED.is_dir() else Path(__file__).resolve().parents[2]


SHIPPED = shipped_root()
BUILTIN_TASKS = SHIPPED / "tasks"  # the task suites that ship with mkbench


def in_package(path: Path) -> bool:
    """Is this file part of the copy an installed wheel carries (mkbench/shipped/)? mkbench never
    writes there: the install is read-only to it, and a change would be lost at the next install."""
    return Path(path).resolve().is_relative_to(PACKAGED)


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
    tasks_dir: Path  # MKBENCH_TASKS: the task spec files (default: the shipped tasks/ folder)
    mnn_src: Path | None  # MKBENCH_MNN_SRC: the pinned MNN tree (dir or tarball)
    ndk_home: Path | None  # ANDROID_NDK_HOME: preferred arm64 toolchain when set
    models_dir: Path  # MKBENCH_MODELS: GGUF files and their registry
    builds_dir: Path  # MKBENCH_BUILDS: native MNN builds and MNNConvert (shareable; read-only in the appliance image)
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
