"""The task suite: specs, models, references, validation and import."""

from __future__ import annotations

from pathlib import Path

from .. import settings as settings_module
from .spec import Task, TaskError, load_suite, load_task, suite_hash

DEFAULT_SUITE = "paper"

__all__ = ["Task", "TaskError", "load_suite", "load_task", "suite_hash", "all_tasks", "get_task", "DEFAULT_SUITE"]


def all_tasks(suite: str | None = DEFAULT_SUITE, root: Path | None = None) -> tuple[list[Task], list[str]]:
    """The tasks of a suite (None: every suite), and one error line per bad spec file."""
    return load_suite(root or settings_module.load().tasks_dir, suite)


def get_task(name: str, root: Path | None = None) -> Task:
    """One task by name, from any suite; raises TaskError if there is none."""
    tasks, _ = load_suite(root or settings_module.load().tasks_dir, None)
    for task in tasks:
        if task.name == name:
            return task
    raise TaskError(f"no task named {name!r} (see `mkbench tasks list`)")
