"""The task suite: specs, models, references, validation and import."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import settings as settings_module
from .spec import Task, TaskError, load_suite, load_task, suite_hash

DEFAULT_SUITE = "paper"

__all__ = ["Task", "TaskError", "load_suite", "load_task", "suite_hash", "all_tasks", "get_task", "task_roots",
           "data_tasks_dir", "DEFAULT_SUITE"]


def data_tasks_dir(settings: settings_module.Settings) -> Path:
    """The data folder's tasks (MKBENCH_HOME/tasks): what `mkbench tasks import` writes, in imported/."""
    return settings.home / "tasks"


def task_roots(settings: settings_module.Settings) -> tuple[Path, ...]:
    """Where the tasks are: the built-in suites (MKBENCH_TASKS, default the repository's tasks/)
    and the data folder's tasks (imported ones). The CLI passes these to all_tasks and get_task."""
    return (settings.tasks_dir, data_tasks_dir(settings))


def all_tasks(suite: str | None = DEFAULT_SUITE,
              roots: Path | Sequence[Path] = settings_module.BUILTIN_TASKS) -> tuple[list[Task], list[str]]:
    """The tasks of a suite (None: every suite) under roots (default: the built-in suites; the CLI
    passes task_roots(settings)), and one error line per bad spec file."""
    return load_suite(roots, suite)


SUITE_PREFERENCE = ("paper", "extra", "imported")


def get_task(name: str, roots: Path | Sequence[Path] = settings_module.BUILTIN_TASKS, suite: str | None = None) -> Task:
    """One task by name; where suites share a name (an imported copy of a paper task), the
    paper's own comes first. `suite:name` names one suite's. Raises TaskError if there is none."""
    if ":" in name and suite is None:
        suite, name = name.split(":", 1)
    tasks, _ = load_suite(roots, suite)
    found = [t for t in tasks if t.name == name]
    if not found:
        raise TaskError(f"no task named {name!r} (see `mkbench tasks list`)")
    rank = {s: i for i, s in enumerate(SUITE_PREFERENCE)}
    return min(found, key=lambda t: rank.get(t.suite, len(rank)))
