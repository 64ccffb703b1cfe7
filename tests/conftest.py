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


@pytest.fixture
def test_settings(mkbench_home) -> settings_module.Settings:
    """This test's settings, skipping the test when the MNN tree is absent."""
    from mkbench.mnn import tree

    s = settings_module.load()
    try:
        tree.open_tree(s)
    except tree.TreeError as error:
        pytest.skip(f"MNN tree not found: set MKBENCH_MNN_SRC ({error})")
    return s
