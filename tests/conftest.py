"""Shared fixtures: every test gets its own MKBENCH_HOME, so nothing touches the user's data.

MNN builds are the exception: they take minutes and depend only on the tree and the
toolchain, so tests share the user's build cache (MKBENCH_BUILDS) instead of rebuilding.
"""

from __future__ import annotations

import os

import pytest

from mkbench import settings as settings_module

SHARED_BUILDS = os.environ.get("MKBENCH_BUILDS") or str(settings_module.load().builds_dir)


@pytest.fixture(autouse=True)
def mkbench_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("mkbench-home")
    monkeypatch.setenv("MKBENCH_HOME", str(home))
    monkeypatch.setenv("MKBENCH_BUILDS", SHARED_BUILDS)
    return home
