"""Paths, pins and defaults, in one place, read once from the environment.

Every other module asks `load()` instead of reading environment variables itself, so a
test can point the whole appliance at a temporary home by setting MKBENCH_HOME.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

REPO_ROOT = Path(__file__).resolve().parents[2]

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

    @property
    def db_path(self) -> Path:
        return self.home / "mkbench.sqlite"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


def _optional_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def load() -> Settings:
    """Read the settings from the environment (cheap; call where needed)."""
    home = _optional_path("MKBENCH_HOME") or Path(platformdirs.user_data_dir("mkbench"))
    return Settings(
        home=home,
        tasks_dir=_optional_path("MKBENCH_TASKS") or REPO_ROOT / "tasks",
        mnn_src=_optional_path("MKBENCH_MNN_SRC"),
        ndk_home=_optional_path("ANDROID_NDK_HOME"),
        models_dir=_optional_path("MKBENCH_MODELS") or home / "models",
        builds_dir=_optional_path("MKBENCH_BUILDS") or home / "builds",
    )
