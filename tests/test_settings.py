"""Settings: where the shipped folders are, in a checkout and in a wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mkbench import settings as settings_module

CHECKOUT = Path(__file__).resolve().parents[1]


def test_the_shipped_folders_are_found():
    for part in ("mnn/pin.toml", "mnn/runner/runner.cpp", "models/manifest.toml", "ndk/pin.toml", "tasks/paper"):
        assert (settings_module.SHIPPED / part).exists(), part
    assert settings_module.BUILTIN_TASKS == settings_module.SHIPPED / "tasks"


def test_the_packaged_copy_is_told_from_everything_else(tmp_path):
    spec = next((settings_module.BUILTIN_TASKS / "paper").rglob("*.toml"))
    assert settings_module.in_package(spec) == (settings_module.SHIPPED == settings_module.PACKAGED)
    assert settings_module.in_package(settings_module.PACKAGED / "tasks" / "paper" / "Abs.toml")
    assert not settings_module.in_package(tmp_path / "Mine.toml")


@pytest.mark.skipif(not (CHECKOUT / "setup.py").is_file(), reason="needs the source checkout (setup.py) to build a wheel")
def test_a_wheel_carries_the_shipped_folders(tmp_path):
    """A regular install finds tasks/, mnn/, models/ and ndk/ inside the package, and nothing
    that is not the project's (an imported task, an NDK unzipped for an image build)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    for folder in ("appliance", "tasks", "mnn", "models", "ndk"):
        shutil.copytree(CHECKOUT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "ndk" / "android-ndk-r27c" / "build").mkdir(parents=True)
    (source / "tasks" / "imported").mkdir(exist_ok=True)
    (source / "tasks" / "imported" / "Mine.toml").write_text("")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next(tmp_path.glob("mkbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("mnn/pin.toml", "mnn/runner/runner.cpp", "mnn/converter/mkbench_transform_record.cpp",
                 "mnn/toolchains/aarch64-linux-gnu.cmake", "models/manifest.toml", "ndk/pin.toml",
                 "tasks/paper/Unary/Abs.toml", "tasks/runs/stratified-12.toml"):
        assert f"mkbench/shipped/{part}" in names, part
    assert not any("android-ndk" in n or "/imported/" in n or "__pycache__" in n for n in names)
    assert "mkbench/kinds/cpu_execution/unary.cpp" in names  # the package's own data, as before
