"""Shared fixtures: every test gets its own MKBENCH_HOME, so nothing touches the user's data."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def mkbench_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("mkbench-home")
    monkeypatch.setenv("MKBENCH_HOME", str(home))
    return home
