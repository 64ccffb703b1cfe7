"""Native MNN builds: keys, caching, the link kit, status, and the store's builds table.

The builds are real (CMake + Ninja + ccache against the pinned tree) and live in the shared build
cache (MKBENCH_BUILDS, see conftest.py), so only the first run takes minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import replace

import pytest

from mkbench import settings as settings_module
from mkbench import store
from mkbench.mnn import build
from mkbench.mnn.toolchain import TARGETS, Toolchain, ToolchainError, toolchain


def test_library_key_follows_tree_toolchain_and_options(monkeypatch):
    tc = Toolchain("host", "host-gcc", ("-DX=1",), (), (), "g++ 12", ())
    key = build.library_key(tc, "a" * 64)
    assert key == build.library_key(tc, "a" * 64)
    assert key != build.library_key(tc, "b" * 64)
    assert key != build.library_key(replace(tc, identity="g++ 13"), "a" * 64)
    monkeypatch.setitem(build.MNN_OPTIONS, "MNN_AVX512", "ON")
    assert key != build.library_key(tc, "a" * 64)


def test_a_build_key_does_not_depend_on_where_mkbench_is_installed(tmp_path, monkeypatch):
    """The image builds MNN from one copy of mkbench and judges from another (its site-packages):
    the Debian cross toolchain file counts by its content, not its path."""
    from mkbench.mnn.toolchain import key_args

    here = settings_module.SHIPPED / "mnn" / "toolchains" / "aarch64-linux-gnu.cmake"
    elsewhere = tmp_path / "site-packages" / "mkbench" / "shipped"
    (elsewhere / "mnn" / "toolchains").mkdir(parents=True)
    shutil.copy(here, elsewhere / "mnn" / "toolchains" / here.name)
    tc = Toolchain("arm64", "debian-aarch64", (f"-DCMAKE_TOOLCHAIN_FILE={here}",), (), (), "g++ 12", ())
    moved = replace(tc, cmake_args=(f"-DCMAKE_TOOLCHAIN_FILE={elsewhere / 'mnn' / 'toolchains' / here.name}",))
    expected = key_args(tc)
    monkeypatch.setattr(settings_module, "SHIPPED", elsewhere)
    assert key_args(moved) == expected and str(tmp_path) not in expected[0]
    (elsewhere / "mnn" / "toolchains" / here.name).write_text("# another toolchain\n")
    assert key_args(moved) != expected


def test_unknown_target_is_refused(settings):
    with pytest.raises(ToolchainError, match="unknown target"):
        toolchain("riscv", settings)


def test_status_never_raises_without_a_tree(tmp_path, settings):
    s = replace(settings, home=tmp_path, mnn_src=tmp_path / "nowhere")
    rows = build.status(s)
    assert [r.target for r in rows] == list(TARGETS)
    assert not any(r.built for r in rows)


@pytest.mark.slow
def test_host_build_is_complete_and_cached(mnn_settings):
    native = build.build_native("host", mnn_settings)
    assert native.runner.is_file() and os.access(native.runner, os.X_OK)
    assert native.library.is_file() and native.library_noreg.is_file()
    members = subprocess.run(["ar", "t", native.library_noreg], capture_output=True, text=True).stdout.split()
    assert "CPUOPRegister.cpp.o" not in members and "CPUUnary.cpp.o" in members
    assert "{source}" in native.compile_command and "{output}" in native.compile_command
    assert "-fno-rtti" in native.compile_command  # why the runner names classes from vtables

    started = time.monotonic()
    again = build.build_native("host", mnn_settings)
    assert again == native and time.monotonic() - started < 5
    status = {r.target: r for r in build.status(mnn_settings)}
    assert status["host"].built and status["host"].directory == native.directory


@pytest.mark.slow
def test_a_new_runner_reuses_the_library_and_is_recorded(mnn_settings, monkeypatch):
    native = build.build_native("host", mnn_settings)
    fresh_key = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(build, "runner_key", lambda: fresh_key)
    try:
        started = time.monotonic()
        rebuilt = build.build_native("host", mnn_settings)
        assert time.monotonic() - started < 120  # the runner layer only, not MNN
        assert rebuilt.library == native.library and rebuilt.runner != native.runner and rebuilt.runner.is_file()
        db = store.open_db(mnn_settings.db_path)
        rows = db.conn.execute("SELECT ok, what FROM builds WHERE target = 'host' AND cache_key = ?", (native.key,)).fetchall()
        assert rows == [(1, "native")]
    finally:
        shutil.rmtree(native.directory / f"runner-{fresh_key}", ignore_errors=True)


@pytest.mark.slow
def test_native_runner_refuses_bad_arguments_in_one_line(mnn_settings):
    native = build.build_native("host", mnn_settings)
    result = subprocess.run([native.runner, "--model"], capture_output=True, text=True)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run([native.runner, "--model", "m", "--sets", "i", "--out", "o", "--warmup", "1",
                             "--iterations", "1", "--rotate", "1", "--threads", "1", "--hint", "NO_SUCH=1"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "unknown hint NO_SUCH" in result.stderr


@pytest.mark.slow
def test_arm64_build_is_an_aarch64_binary(mnn_settings):
    native = build.build_native("arm64", mnn_settings)
    header = native.runner.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64
