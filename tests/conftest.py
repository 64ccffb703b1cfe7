"""Shared fixtures: every test gets its own MKBENCH_HOME, so nothing touches the user's data.

MNN builds are the exception: they take minutes and depend only on the tree and the
toolchain, so tests share the user's build cache (MKBENCH_BUILDS) instead of rebuilding.

`settings` are this test's settings, read from the environment the way the CLI reads them;
`mnn_settings` the same, for a test that needs the pinned MNN tree: this is the one place that
skips a test for want of it (CI points MKBENCH_MNN_SRC at the vendored tarball, so none skips there).
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
    # Tests check verdicts, not precision: a timed series stops after its first MIN_RUNS runs.
    monkeypatch.setenv("MKBENCH_TIMING_BUDGET", os.environ.get("MKBENCH_TIMING_BUDGET", "0.5"))
    return home


@pytest.fixture
def settings(mkbench_home) -> settings_module.Settings:
    """This test's settings (its own home, the shared builds)."""
    return settings_module.load()


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory) -> settings_module.Settings:
    """Settings for session-scoped fixtures: a home of their own, the shared builds."""
    home = tmp_path_factory.mktemp("mkbench-session-home")
    return settings_module.load({**os.environ, "MKBENCH_HOME": str(home), "MKBENCH_BUILDS": SHARED_BUILDS})


def _tree_or_skip(settings: settings_module.Settings):
    from mkbench.mnn import tree

    try:
        return tree.open_tree(settings)
    except tree.TreeError as error:
        pytest.skip(f"MNN tree not found: set MKBENCH_MNN_SRC ({error})")


@pytest.fixture
def mnn_settings(settings) -> settings_module.Settings:
    """This test's settings, skipping the test when the MNN tree is absent."""
    _tree_or_skip(settings)
    return settings


@pytest.fixture(scope="session")
def mnn_root(session_settings):
    """The pinned MNN tree's root, for session- and module-scoped fixtures (skipping without it)."""
    return _tree_or_skip(session_settings).path


@pytest.fixture
def judge(mnn_settings, monkeypatch):
    """The judge on this test's settings and database: judge(source, task, device="host") -> Verdict,
    the task by name or as a Task. A kernel that never returns is stopped after judge.series.MIN_DEADLINE
    seconds (its correctness run's deadline when native is fast)."""
    from mkbench import store
    from mkbench.devices import get_device
    from mkbench.judge import evaluate
    from mkbench.tasks import get_task

    db = store.open_db(mnn_settings.db_path)

    def run(source: str, task, device: str = "host"):
        task = get_task(task) if isinstance(task, str) else task
        return evaluate.evaluate(task, source, get_device(device, mnn_settings), mnn_settings, db=db)

    run.db = db
    return run
