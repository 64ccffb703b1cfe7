"""The task suite: specs, models, references, validation and import."""

from __future__ import annotations

from pathlib import Path

from .. import settings as settings_module
from .spec import Task, TaskError, load_suite, load_task, suite_hash

DEFAULT_SUITE = "paper"

__all__ = ["Task", "TaskError", "load_suite", "load_task", "suite_hash", "all_tasks", "get_task", "DEFAULT_SUITE"]


def all_tasks(suite: str | None = DEFAULT_SUITE, root: Path = settings_module.BUILTIN_TASKS) -> tuple[list[Task], list[str]]:
    """The tasks of a suite (None: every suite) under root (default: the built-in suites; the CLI
    passes MKBENCH_TASKS), and one error line per bad spec file."""
    return load_suite(root, suite)


SUITE_PREFERENCE = ("paper", "extra", "imported")


def get_task(name: str, root: Path = settings_module.BUILTIN_TASKS, suite: str | None = None) -> Task:
    """One task by name; where suites share a name (an imported copy of a paper task), the
    paper's own comes first. `suite:name` names one suite's. Raises TaskError if there is none."""
    if ":" in name and suite is None:
        suite, name = name.split(":", 1)
    tasks, _ = load_suite(root, suite)
    found = [t for t in tasks if t.name == name]
    if not found:
        raise TaskError(f"no task named {name!r} (see `mkbench tasks list`)")
    rank = {s: i for i, s in enumerate(SUITE_PREFERENCE)}
    return min(found, key=lambda t: rank.get(t.suite, len(rank)))
