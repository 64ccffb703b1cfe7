"""What a run does: its configuration (a TOML file, then flags), the generators it can name, the
tasks and devices it selects.

    config = RunConfig.build(Path("run.toml"), {"devices": ["host", "emulator"]})
    tasks = select_tasks(config, settings)
"""

from __future__ import annotations

import hashlib
import importlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .. import settings as settings_module
from ..agents import MODES, SWITCHES, WITHOUT, Budget, Generator
from ..devices import list_devices
from ..tasks import Task, all_tasks, task_roots

SMOKE = (
    "Sin",  # Trigonometry, cpu-execution, [16, 32, 32]
    "MaxPool_2d_strides",  # Pooling, cpu-execution, [1, 3, 32, 32]
    "LayerNorm_3d",  # Normalization, cpu-execution, [1, 8, 32, 32]
    "Softplus_2d",  # Activation, composite: the converter's Softplus transform, [8, 128]
    "ReduceL1",  # Reduction, composite: the converter's ReduceL1 transform, [2, 3, 4]
    "CumSum",  # Tensor, geometry: MNN's CumSum geometry computer, [16, 32, 32]
)


def judgeable(task: Task) -> bool:
    """Runnable, and not measured unjudgeable by `tasks validate`."""
    return task.status.runnable and task.status.judgeable is not False

HOST = "host"  # the device that is this machine: its measurements get the machine to themselves


class RunError(RuntimeError):
    """A run cannot start or continue; the message says what was wrong and what to do."""


# ---------------------------------------------------------------- generators


@dataclass(frozen=True)
class GeneratorEntry:
    """How to make a generator for a run: make(mode, config, settings) -> Generator."""

    make: Callable[[str, "RunConfig", settings_module.Settings], Generator]
    uses_llm: bool = True  # False: the run opens no model for it
    description: str = ""


def _builtin(module: str, attribute: str, **options) -> Callable[[str, "RunConfig", settings_module.Settings], Generator]:
    def make(mode: str, config: "RunConfig", settings: settings_module.Settings) -> Generator:
        try:
            cls = getattr(importlib.import_module(f"mkbench.agents.{module}"), attribute)
        except (ImportError, AttributeError) as error:
            raise RunError(f"generator mkbench.agents.{module}.{attribute} is not available ({error})") from None
        return cls(mode=mode, settings=settings, **options)

    return make


# The built-in generators' modules and classes, and what each does with every part on.
_BUILTINS = {"one-shot": ("oneshot", "OneShot", "one-shot", "one answer per task"),
             "pass@k": ("passk", "PassK", "pass@k", "k independent samples (budget.samples), best kept"),
             "moka": ("moka", "MoKA", "MoKA", "MoKA: plan and execute, up to budget.rounds rounds")}


def _builtins() -> dict[str, GeneratorEntry]:
    """Each built-in generator, and each with one of its parts switched off (agents.SWITCHES)."""
    entries = {}
    for base, (module, attribute, label, description) in _BUILTINS.items():
        entries[base] = GeneratorEntry(_builtin(module, attribute), description=description)
        for part, switch in SWITCHES[base].items():
            entries[f"{base}-no-{part}"] = GeneratorEntry(_builtin(module, attribute, **{switch: False}),
                                                          description=f"{label} {WITHOUT[part]}")
    return entries


# Name -> entry. Tests and plug-ins add their own; the name is what attempts record, and must be
# the generator's own `name`. A generator with a `worker` field gets its worker's name (its build folder).
GENERATORS: dict[str, GeneratorEntry] = _builtins()


def register(name: str, make: Callable[[str, "RunConfig", settings_module.Settings], Generator], uses_llm: bool = True,
             description: str = "") -> None:
    """Make a generator selectable by name (`--generator NAME`, `generators = [NAME]`)."""
    GENERATORS[name] = GeneratorEntry(make, uses_llm, description)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class RunConfig:
    """What a run does. A TOML file sets any of these keys; flags override the file."""

    suite: str = "paper"
    tasks: tuple[str, ...] = ("all",)  # ("all",) every runnable task | ("smoke",) | task names
    categories: tuple[str, ...] = ()  # keep only these categories (empty: all)
    generators: tuple[str, ...] = ("one-shot",)
    modes: tuple[str, ...] = ("whole-file",)
    model: str | None = None  # LLM backend (see mkbench.llm.config); None: MKBENCH_LLM or the default model
    devices: tuple[str, ...] = (HOST,)  # "all", "host", "qemu-arm64", "emulator", or adb serials
    pool: bool = False  # devices share one queue instead of each doing every item
    budget: dict = field(default_factory=dict)  # Budget fields: calls, tokens, seconds, rounds, samples
    workers_per_device: int = 1  # >1 overlaps generation with a phone's measurements (never for the host)
    reconnect_seconds: float = 300.0  # how long a lost device is waited for once the others are done
    failures_in_a_row: int = 5  # this many failed attempts in a row stop the run (the harness is broken)

    @staticmethod
    def build(path: Path | None = None, overrides: dict[str, Any] | None = None) -> "RunConfig":
        """The config from a TOML file (if any), then the overrides (flags); unknown keys name themselves."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                values.update(tomllib.loads(Path(path).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise RunError(f"cannot read config {path}: {error}") from None
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return RunConfig.from_mapping(values)

    @staticmethod
    def from_mapping(values: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(RunConfig)}
        if unknown := sorted(set(values) - known):
            raise RunError(f"unknown run setting {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key in ("tasks", "categories", "generators", "modes", "devices"):
                clean[key] = _words(value)
            elif key == "budget":
                budget_fields = {f.name for f in fields(Budget)}
                if not isinstance(value, dict) or (bad := sorted(set(value) - budget_fields)):
                    raise RunError(f"budget takes {', '.join(sorted(budget_fields))}, got {value!r}")
                clean[key] = dict(value)
            else:
                clean[key] = value
        config = RunConfig(**clean)
        if not config.tasks or not config.generators or not config.modes or not config.devices:
            raise RunError("a run needs at least one task selection, generator, mode and device")
        if unknown := [g for g in config.generators if g not in GENERATORS]:
            raise RunError(f"unknown generator {', '.join(unknown)}: use {', '.join(sorted(GENERATORS))}")
        if bad := [m for m in config.modes if m not in MODES]:
            raise RunError(f"unknown mode {', '.join(bad)}: use {', '.join(MODES)}")
        if config.workers_per_device < 1:
            raise RunError("workers_per_device must be at least 1")
        return config

    def key(self) -> str:
        """What makes two invocations the same run: the selection, not how it is executed."""
        chosen = {k: v for k, v in self.to_dict().items() if k not in ("workers_per_device", "reconnect_seconds", "failures_in_a_row")}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _words(value) -> tuple[str, ...]:
    """A list from TOML, or a comma-separated string from a flag."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return tuple(str(v).strip() for v in items if str(v).strip())


def select_tasks(config: RunConfig, settings: settings_module.Settings) -> list[Task]:
    """The judgeable tasks a config selects, in suite order; raises RunError naming what is wrong."""
    suite, errors = all_tasks(None if config.suite == "all" else config.suite, task_roots(settings))
    by_name = {t.name: t for t in suite}
    if config.tasks == ("all",):
        chosen = [t for t in suite if judgeable(t)]
    else:
        names = [n for word in config.tasks for n in (SMOKE if word == "smoke" else (word,))]
        if unknown := [n for n in names if n not in by_name]:
            raise RunError(f"no task {', '.join(unknown)} in suite {config.suite!r}"
                           + (f" ({len(errors)} spec files did not load)" if errors else "") + ": see `mkbench tasks list`")
        if broken := [f"{n} ({by_name[n].status.reason or by_name[n].status.judge_reason})"
                      for n in names if not judgeable(by_name[n])]:
            raise RunError(f"not judgeable: {'; '.join(broken)}")
        chosen = [by_name[n] for n in dict.fromkeys(names)]
    if config.categories:
        wanted = {c.lower() for c in config.categories}
        if unknown := wanted - {t.category.lower() for t in suite}:
            raise RunError(f"no category {', '.join(sorted(unknown))} in suite {config.suite!r}")
        chosen = [t for t in chosen if t.category.lower() in wanted]
    if not chosen:
        raise RunError("the selection has no runnable task")
    return chosen


def resolve_devices(selection: tuple[str, ...], settings: settings_module.Settings) -> list[str]:
    """The serials a device selection names ("all": every usable device; "emulator": the mkbench
    emulator, started if none runs)."""
    s = settings
    serials: list[str] = []
    for name in selection:
        if name == "all":
            serials += [d.serial for d in list_devices(settings)]
        elif name == "emulator":
            from ..devices import emulator_ctl

            running = [e for e in emulator_ctl.status_all(s) if e.running]
            if not running:
                try:
                    running = [emulator_ctl.start(s)]
                except RuntimeError as error:
                    raise RunError(f"cannot start the mkbench emulator: {error}") from None
            serials += [e.serial for e in running]
        else:
            serials.append(name)
    return list(dict.fromkeys(serials))
