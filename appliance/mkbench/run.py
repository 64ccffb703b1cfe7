"""run-all: every selected task × generator × mode × device, from nothing to a results table.

    config = RunConfig.build(Path("run.toml"), {"devices": ["host", "emulator"]})   # TOML, then flags
    summary = run_all(config)            # the same config again finds its run and resumes it
    summary = resume("20260101-120000-3fa2c1")

A work item is (run, task, generator, mode, slot). A slot is a queue of items: by default each
device has its own (every device does every item, so devices can be compared); a pooled run
gives its devices one shared queue (identical phones sharing the work; each item is done once,
by whichever is free). One worker thread serves a device (more with `workers_per_device`, so a
phone measures one item while the next is generated and built); a device runs one evaluation at a
time, and while the host itself measures, this run's other work on the machine waits.

Resume: an attempt row is written only when its item is done (status finished, or failed for a
fault of the harness); a resumed run skips every item with a finished attempt and redoes the
rest, so a run killed at any moment (kill -9 included) loses nothing recorded and repeats
nothing finished. A device that goes away (DeviceLost) is marked lost, its item goes back to the
queue (to another device of a pooled run, or to wait for the device to come back), and the run
goes on with the others.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import platform
import re
import sys
import threading
import time
import tomllib
from collections import Counter, deque
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from . import __version__
from . import settings as settings_module
from . import store
from .agents import AttemptResult, Budget, Generator
from .devices import Device, DeviceLost, DeviceNotFound, device_id, get_device, list_devices, store_device
from .llm.chat import Chat, Recorder
from .tasks import Task, all_tasks, suite_hash

# The smoke subset: six small judgeable tasks, one per category, of all three kinds of kernel,
# each under 0.1 MB of input, so a smoke run is minutes per generator and device.
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

POOL = "pool"  # the slot of a pooled run's shared queue
HOST = "host"  # the device that is this machine: its measurements get the machine to themselves


class RunError(RuntimeError):
    """A run cannot start or continue; the message says what was wrong and what to do."""


# ---------------------------------------------------------------- generators


@dataclass(frozen=True)
class GeneratorEntry:
    """How to make a generator for a run: make(mode, config) -> Generator."""

    make: Callable[[str, "RunConfig"], Generator]
    uses_llm: bool = True  # False: the run opens no model for it
    description: str = ""


def _builtin(module: str, attribute: str, **options) -> Callable[[str, "RunConfig"], Generator]:
    def make(mode: str, config: "RunConfig") -> Generator:
        try:
            cls = getattr(importlib.import_module(f"mkbench.agents.{module}"), attribute)
        except (ImportError, AttributeError) as error:
            raise RunError(f"generator mkbench.agents.{module}.{attribute} is not available ({error})") from None
        return cls(mode=mode, **options)

    return make


# Name -> entry. Tests and plug-ins add their own; the name is what attempts record, and must be
# the generator's own `name`. A generator with a `worker` field gets its worker's name (its build folder).
GENERATORS: dict[str, GeneratorEntry] = {
    "one-shot": GeneratorEntry(_builtin("oneshot", "OneShot"), description="one answer per task"),
    "pass@k": GeneratorEntry(_builtin("passk", "PassK"), description="k independent samples (budget.samples), best kept"),
    "moka": GeneratorEntry(_builtin("moka", "MoKA"), description="MoKA: plan and execute, up to budget.rounds rounds"),
    "moka-no-tree": GeneratorEntry(_builtin("moka", "MoKA", tree=False), description="MoKA without the Tree Builder"),
    "moka-no-errors": GeneratorEntry(_builtin("moka", "MoKA", errors=False), description="MoKA without the Error Extractor"),
    "moka-no-accel": GeneratorEntry(_builtin("moka", "MoKA", accelerator=False), description="MoKA that stops once correct"),
}


def register(name: str, make: Callable[[str, "RunConfig"], Generator], uses_llm: bool = True, description: str = "") -> None:
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
        from .agents import MODES

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


def select_tasks(config: RunConfig, settings: settings_module.Settings | None = None) -> list[Task]:
    """The judgeable tasks a config selects, in suite order; raises RunError naming what is wrong."""
    s = settings or settings_module.load()
    suite, errors = all_tasks(None if config.suite == "all" else config.suite, s.tasks_dir)
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


def resolve_devices(selection: tuple[str, ...], settings: settings_module.Settings | None = None) -> list[str]:
    """The serials a device selection names ("all": every usable device; "emulator": the mkbench
    emulator, started if none runs)."""
    s = settings or settings_module.load()
    serials: list[str] = []
    for name in selection:
        if name == "all":
            serials += [d.serial for d in list_devices()]
        elif name == "emulator":
            from .devices import emulator_ctl

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


# ---------------------------------------------------------------- work items and records


@dataclass(frozen=True)
class WorkItem:
    """One unit of a run: a generator's attempt at a task, for one slot (a device, or the pool)."""

    task: str
    generator: str
    mode: str
    slot: str


@dataclass(frozen=True)
class RunSummary:
    """How a run stands after run_all / resume returns."""

    run_id: str
    status: str  # finished | interrupted
    planned: int
    finished: int  # items with a finished attempt (this session and before)
    failed: int  # items whose last attempt failed (retried by the next resume)
    pending: int  # items never finished
    done_now: int  # attempts this session wrote
    lost_devices: tuple[str, ...]
    seconds: float
    message: str  # one line: what to do next, if anything


def plan(run_id: str, db) -> list[WorkItem]:
    """Every work item of a run, in order: task-major, so a partial run covers whole tasks first."""
    row = _run_row(db, run_id)
    config = json.loads(row["config"])
    slots = list(dict.fromkeys(r["slot"] for r in db.query("SELECT slot FROM run_devices WHERE run_id = ? ORDER BY rowid", [run_id])))
    return [WorkItem(t["name"], g, m, slot) for t in config["tasks"] for slot in slots
            for g in config["run"]["generators"] for m in config["run"]["modes"]]


def finished_items(db, run_id: str) -> set[WorkItem]:
    """The items that have a finished attempt (what a resume skips)."""
    slot_of = {r["device_id"]: r["slot"] for r in db.query(
        "SELECT device_id, slot FROM run_devices WHERE run_id = ? AND device_id IS NOT NULL", [run_id])}
    return {WorkItem(a["task"], a["generator"], a["mode"], slot_of.get(a["device_id"], a["device_id"]))
            for a in db.query("SELECT task, generator, mode, device_id FROM attempts WHERE run_id = ? AND status = 'finished'", [run_id])}


def record_attempt(db, run_id: str, item: WorkItem, device_key: str, result: AttemptResult | None,
                   call_ids: list[int] = (), error: str | None = None, seconds: float = 0.0) -> tuple[int, str]:
    """Write (or complete) the attempt row of a done item, and attach its LLM calls; one transaction.

    A generator that recorded its own attempt (result.attempt_id) keeps its row and its status:
    this fills in the run's keys and the summary fields the report reads (`candidates`,
    `best_verdict`). Otherwise the row is written here. Returns the row id and its status.
    """
    summary = _summary(result, error, seconds)
    best = result.best.evaluation_id if result and result.best else None
    status = "finished" if error is None else "failed"
    with store.transaction(db):
        existing = db.conn.execute("SELECT summary, status FROM attempts WHERE id = ?", [result.attempt_id]).fetchone() \
            if result and result.attempt_id else None
        if existing:
            if existing[1] in ("finished", "failed"):
                status = existing[1]  # the generator's own word (e.g. failed on an LLM error)
            merged = {**summary, **_json(existing[0])}
            merged.update({k: summary[k] for k in ("candidates", "best_verdict")})
            db.conn.execute(
                "UPDATE attempts SET run_id = ?, task = ?, generator = ?, mode = ?, device_id = ?, status = ?, "
                "best_evaluation_id = COALESCE(best_evaluation_id, ?), summary = ? WHERE id = ?",
                [run_id, item.task, item.generator, item.mode, device_key, status, best, json.dumps(merged, sort_keys=True),
                 result.attempt_id])
            attempt_id = result.attempt_id
        else:
            attempt_id = db.conn.execute(
                "INSERT INTO attempts (created_at, run_id, task, generator, mode, device_id, best_evaluation_id, status, summary) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [time.time(), run_id, item.task, item.generator, item.mode, device_key, best, status,
                 json.dumps(summary, sort_keys=True)]).lastrowid
        for call_id in call_ids:
            db.conn.execute("UPDATE llm_calls SET attempt_id = ? WHERE id = ? AND attempt_id IS NULL", [attempt_id, call_id])
        db.conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", [time.time(), run_id])
    return attempt_id, status


def _summary(result: AttemptResult | None, error: str | None, seconds: float) -> dict[str, Any]:
    if result is None:
        return {"error": error, "seconds": round(seconds, 3), "llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                "stopped_by": "error", "candidates": [], "best_verdict": None}
    return {
        "llm_calls": result.llm_calls, "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "seconds": round(result.seconds, 3), "stopped_by": result.stopped_by, "notes": result.notes,
        "candidates": [_verdict_fields(v) for v in result.verdicts],
        "best_verdict": _verdict_fields(result.best) if result.best else None,
    }


def _verdict_fields(verdict) -> dict[str, Any]:
    """What the report needs of a verdict when it has no evaluation row (a lint rejection, a replayed attempt)."""
    return {"verdict": verdict.verdict, "reason": verdict.reason, "compiled": verdict.compiled, "correct": verdict.correct,
            "speedup": verdict.speedup, "speedup_low": verdict.speedup_low, "speedup_high": verdict.speedup_high,
            "timing_reportable": verdict.timing_reportable, "evaluation_id": verdict.evaluation_id}


def _json(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _run_row(db, run_id: str) -> dict:
    rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    if not rows:
        raise RunError(f"no run {run_id!r} in {db.conn.execute('PRAGMA database_list').fetchone()[2]}: see `mkbench run list`")
    return rows[0]


# ---------------------------------------------------------------- provenance


def generators_fingerprint() -> str:
    """sha256 over the generators' code and prompt templates (agents/): a resumed run must not
    mix attempts written with different prompts."""
    root = Path(__file__).parent / "agents"
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".md") and "__pycache__" not in p.parts):
        digest.update(f"{path.relative_to(root).as_posix()}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def provenance(config: RunConfig, tasks: list[Task], devices: list[Device], backend, settings: settings_module.Settings) -> dict:
    """What a reader needs to reproduce the run: versions, MNN, toolchains and flags, model, devices, suite."""
    from .judge import evaluate as judge_evaluate
    from .judge import timing
    from .mnn import build as mnn_build
    from .mnn import toolchain as mnn_toolchain
    from .mnn import tree as mnn_tree

    record: dict[str, Any] = {
        "mkbench_version": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "machine": platform.node(), "argv": sys.argv,
        "suite": {"name": config.suite, "hash": suite_hash(tasks), "tasks": len(tasks)},
        "judge": {"threads": settings_module.JUDGE_THREADS, "precision": settings_module.JUDGE_PRECISION,
                  "hints": settings_module.JUDGE_HINTS, "target_run_ms": judge_evaluate.TARGET_RUN_MS,
                  "pairs": judge_evaluate.PAIRS, "implausible_speedup": timing.IMPLAUSIBLE_SPEEDUP},
        "budget": asdict(Budget(**config.budget)),
        "generators": {"sha256": generators_fingerprint()},
    }
    try:
        tree = mnn_tree.open_tree(settings)
        record["mnn"] = {"tag": settings_module.MNN_TAG, "commit": settings_module.MNN_COMMIT, "tree": str(tree.path),
                         "tree_fingerprint": tree.fingerprint, "matches_pin": tree.matches_pin, "options": mnn_build.MNN_OPTIONS}
    except Exception as error:  # a missing tree is the judge's to report; the run records what it saw
        tree = None
        record["mnn"] = {"tag": settings_module.MNN_TAG, "commit": settings_module.MNN_COMMIT, "error": str(error)}
    record["toolchains"] = {}
    for target in sorted({judge_evaluate.target_of(d) for d in devices}):
        try:
            tc = mnn_toolchain.toolchain(target, settings)
            record["toolchains"][target] = {
                "name": tc.name, "identity": tc.identity, "cmake_args": list(tc.cmake_args), "link_flags": list(tc.link_flags),
                "link_libs": list(tc.link_libs), "library_key": mnn_build.library_key(tc, tree.fingerprint) if tree else None}
        except Exception as error:
            record["toolchains"][target] = {"error": str(error)}
    record["model"] = None if backend is None else {
        "backend": backend.name, "model": backend.model, "sha256": backend.model_sha256,
        "context_length": backend.context_length, "sampling": asdict(backend.sampling), "config": config.model}
    record["devices"] = {d.serial: {"id": device_id(d), "fingerprint": d.fingerprint()} for d in devices}
    return record


# ---------------------------------------------------------------- locks


class MachineLock:
    """Readers: work that loads this machine (LLM calls, items for other devices). Writer: a
    measurement on the host. Writers go first once waiting; a thread may re-enter as a reader."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer or self._writers_waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                with self._cond:
                    self._readers -= 1
                    self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_exclusive(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class WorkerDevice:
    """A device as one worker sees it: `worker` names its build folder, and one evaluation at a
    time holds the device (from `workdir`, which opens an evaluation's device work, to `remove`,
    which ends it; the worker closes it in any case when the item ends)."""

    def __init__(self, device: Device, worker: str, evaluation_lock: threading.Lock, machine: MachineLock | None):
        self._device = device
        self.worker = worker
        self._evaluation_lock = evaluation_lock
        self._machine = machine  # set for the host: its measurements take the machine
        self._holding = False

    def __getattr__(self, name: str):
        return getattr(self._device, name)

    def __repr__(self) -> str:
        return f"WorkerDevice({self._device!r}, worker={self.worker!r})"

    def workdir(self, run_name: str) -> str:
        if not self._holding:
            self._evaluation_lock.acquire()
            if self._machine is not None:
                self._machine.acquire_exclusive()
            self._holding = True
        try:
            return self._device.workdir(run_name)
        except BaseException:
            self.release()
            raise

    def remove(self, remote: str) -> None:
        try:
            self._device.remove(remote)
        finally:
            self.release()

    def release(self) -> None:
        """End this worker's hold on the device (and on the machine, for the host)."""
        if self._holding:
            self._holding = False
            if self._machine is not None:
                self._machine.release_exclusive()
            self._evaluation_lock.release()


class SharedBackend:
    """One loaded model for every worker: calls take turns, and wait while the host measures."""

    def __init__(self, backend, machine: MachineLock):
        self._backend = backend
        self._machine = machine
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def count_prompt_tokens(self, messages):
        with self._lock:
            return self._backend.count_prompt_tokens(messages)

    def generate(self, request):
        with self._machine.shared(), self._lock:
            return self._backend.generate(request)

    def close(self) -> None:
        """The run closes the real backend when every worker is done."""


@dataclass(frozen=True)
class CallLog(Recorder):
    """A Recorder that also remembers the ids of the calls it wrote (through every bound copy)."""

    calls: list = field(default_factory=list, compare=False, repr=False)

    def bound(self, attempt_id: int | None = None, role: str | None = None) -> "CallLog":
        return CallLog(db=self.database(), attempt_id=attempt_id, role=role, calls=self.calls)

    def record(self, completion) -> int:
        call_id = super().record(completion)
        self.calls.append(call_id)
        return call_id


@contextmanager
def _file_lock(path: Path, busy_message: str) -> Iterator[None]:
    """An exclusive lock another mkbench process cannot take; the kernel drops it if we are killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunError(f"{busy_message} (pid {handle.read().strip() or '?'})") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


# ---------------------------------------------------------------- progress


@dataclass(frozen=True)
class ItemDone:
    """What progress shows about one finished item."""

    item: WorkItem
    device: str  # serial that did it
    status: str  # finished | failed
    line: str  # verdict and speed, or the error
    seconds: float


class Progress:
    """Plain-text progress: one line per event (quiet, or not a terminal), or a live bar per stage.

    A stage is one generator (and mode) on one slot: its items, how many are done, and an ETA
    from this session's pace.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self._lock = threading.Lock()
        self._stages: dict[str, dict[str, Any]] = {}
        self._drawn = 0

    @staticmethod
    def stage_of(item: WorkItem, modes: int = 1) -> str:
        return f"{item.generator}{'/' + item.mode if modes > 1 else ''} @ {item.slot}"

    def begin(self, run_id: str, stages: dict[str, tuple[int, int]], workers: dict[str, int]) -> None:
        """stages: name -> (items, already finished); workers: name -> workers serving it."""
        with self._lock:
            for name, (total, done) in stages.items():
                self._stages[name] = {"total": total, "done": done, "ok": 0, "bad": 0, "failed": 0,
                                      "seconds": [], "workers": workers.get(name, 1)}
            remaining = sum(t - d for t, d in stages.values())
            self._say(f"run {run_id}: {sum(t for t, _ in stages.values())} items, {remaining} to do")
            self._draw()

    def note(self, text: str) -> None:
        with self._lock:
            self._say(text)
            self._draw()

    def item(self, stage: str, done: ItemDone) -> None:
        with self._lock:
            s = self._stages[stage]
            s["done"] += 1
            s["seconds"].append(done.seconds)
            key = "failed" if done.status == "failed" else ("ok" if done.line.startswith("correct") else "bad")
            s[key] += 1
            if not self.live:
                self._say(f"[{s['done']}/{s['total']}] {stage}: {done.item.task} on {done.device}: {done.line} "
                          f"({done.seconds:.0f} s){self._eta(s)}")
            self._draw()

    def end(self, summary: RunSummary) -> None:
        with self._lock:
            self._draw(final=True)
            self._say(f"run {summary.run_id} {summary.status}: {summary.finished}/{summary.planned} items finished, "
                      f"{summary.failed} failed, {summary.pending} pending, {summary.done_now} done now in "
                      f"{_duration(summary.seconds)}" + (f"; {summary.message}" if summary.message else ""))

    def _eta(self, s: dict) -> str:
        left = s["total"] - s["done"]
        if not left or not s["seconds"]:
            return ""
        pace = sum(s["seconds"]) / len(s["seconds"]) / max(1, s["workers"])
        return f", ETA {_duration(left * pace)}"

    def _say(self, text: str) -> None:
        self._erase()
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, final: bool = False) -> None:
        if not self.live:
            return
        self._erase()
        width = max((len(n) for n in self._stages), default=0)
        for name, s in self._stages.items():
            filled = int(20 * s["done"] / max(1, s["total"]))
            self.stream.write(f"{name:<{width}} [{'#' * filled}{'.' * (20 - filled)}] {s['done']:>4}/{s['total']:<4} "
                              f"correct {s['ok']} · other {s['bad']} · failed {s['failed']}{self._eta(s)}\n")
        self._drawn = 0 if final else len(self._stages)
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# ---------------------------------------------------------------- the queue


class WorkQueue:
    """Pending items per slot and items in flight; workers block here until their slot is done."""

    def __init__(self, items: list[WorkItem], slots: list[str]):
        self._cond = threading.Condition()
        self._pending: dict[str, deque[WorkItem]] = {slot: deque() for slot in slots}
        for item in items:
            self._pending[item.slot].append(item)
        self._in_flight: Counter[str] = Counter()
        self._serving: Counter[str] = Counter()  # workers with a device at hand, per slot
        self.stopping = False

    def serving(self, slot: str, change: int) -> None:
        """A worker starts (+1) or stops (-1) serving a slot: its device is there, or lost."""
        with self._cond:
            self._serving[slot] += change
            self._cond.notify_all()

    def take(self, slot: str) -> WorkItem | None:
        """The next item of a slot; None when the slot is done or the run stops."""
        with self._cond:
            while True:
                if self.stopping:
                    return None
                if self._pending[slot]:
                    self._in_flight[slot] += 1
                    return self._pending[slot].popleft()
                if not self._in_flight[slot]:
                    return None
                self._cond.wait(1.0)  # an item in flight may come back (its device lost)

    def done(self, item: WorkItem) -> None:
        with self._cond:
            self._in_flight[item.slot] -= 1
            self._cond.notify_all()

    def give_back(self, item: WorkItem) -> None:
        with self._cond:
            self._in_flight[item.slot] -= 1
            self._pending[item.slot].appendleft(item)
            self._cond.notify_all()

    def slot_done(self, slot: str) -> bool:
        with self._cond:
            return not self._pending[slot] and not self._in_flight[slot]

    def quiet_but(self, slot: str) -> bool:
        """Nothing in flight, and no other slot with a device at hand has work left: waiting for this
        slot's device is all that is left to do."""
        with self._cond:
            return not any(self._in_flight.values()) and not any(
                q for s, q in self._pending.items() if s != slot and self._serving[s] > 0)

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._pending.values())


# ---------------------------------------------------------------- the run


def run_all(config: RunConfig, *, new: bool = False, run_id: str | None = None, progress: Progress | None = None,
            settings: settings_module.Settings | None = None, db_path: Path | None = None) -> RunSummary:
    """Run a config: resume its unfinished run (same selection), or start one. A finished run with
    the same selection is returned as it is unless `new` asks for another."""
    s = settings or settings_module.load()
    db = store.open_db(db_path or s.db_path)
    key = config.key()
    if run_id is None and not new:
        rows = list(db.query("SELECT id, status FROM runs WHERE config_key = ? ORDER BY created_at DESC LIMIT 1", [key]))
        if rows:
            return resume(rows[0]["id"], progress=progress, settings=s, db_path=db_path)
    tasks = select_tasks(config, s)
    _check_generators(config)
    serials = resolve_devices(config.devices, s)
    if run_id is None:
        base = run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{key[:6]}"
        while db["runs"].count_where("id = ?", [run_id]):
            run_id = f"{base}-{db['runs'].count_where('id LIKE ?', [base + '%']) + 1}"
    elif db["runs"].count_where("id = ?", [run_id]):
        raise RunError(f"run {run_id} exists: resume it with `mkbench run resume {run_id}`")
    devices = _connect_all(serials)
    backend = _open_backend(config, s)
    try:
        record = {
            "id": run_id, "created_at": time.time(), "updated_at": time.time(), "status": "running",
            "mkbench_version": __version__, "mnn_commit": settings_module.MNN_COMMIT, "suite_hash": suite_hash(tasks),
            "config_key": key,
            "config": json.dumps({"run": config.to_dict(), "tasks": [
                {"name": t.name, "category": t.category, "kind": t.mnn.kind if t.mnn else None, "operator": t.operator}
                for t in tasks]}, sort_keys=True),
            "provenance": json.dumps(provenance(config, tasks, devices, backend, s), sort_keys=True, default=str),
        }
        with store.transaction(db):
            db.conn.execute(f"INSERT INTO runs ({', '.join(record)}) VALUES ({', '.join('?' for _ in record)})", list(record.values()))
            for device in devices:
                db.conn.execute("INSERT INTO run_devices (run_id, serial, slot, device_id, status, detail, updated_at) "
                                "VALUES (?, ?, ?, ?, 'active', '', ?)",
                                [run_id, device.serial, POOL if config.pool else device.serial, device_id(device), time.time()])
        for device in devices:
            store_device(db, device)
        return _execute(run_id, db, config, tasks, devices, backend, progress or Progress(), s, db_path or s.db_path)
    finally:
        if backend is not None:
            backend.close()


def resume(run_id: str, *, progress: Progress | None = None, settings: settings_module.Settings | None = None,
           db_path: Path | None = None) -> RunSummary:
    """Continue a run where it stopped: every item without a finished attempt is done now."""
    s = settings or settings_module.load()
    db = store.open_db(db_path or s.db_path)
    row = _run_row(db, run_id)
    stored = json.loads(row["config"])
    config = RunConfig.from_mapping(stored["run"])
    names = [t["name"] for t in stored["tasks"]]
    tasks = select_tasks(replace(config, tasks=tuple(names), categories=()), s)
    if suite_hash(tasks) != row["suite_hash"]:
        raise RunError(f"the task specs of run {run_id} changed since it started (suite hash differs): "
                       "start a new run with `mkbench run-all --new ...`")
    recorded_generators = (_json(row["provenance"]).get("generators") or {}).get("sha256")
    if recorded_generators and recorded_generators != generators_fingerprint():
        raise RunError(f"the generators' code or prompts changed since run {run_id} started: its attempts would mix "
                       "two versions; start a new run with --new (or resume with the code it started with)")
    todo = [i for i in plan(run_id, db) if i not in finished_items(db, run_id)]
    if not todo:
        summary = _summarise(db, run_id, 0, 0.0, "nothing left to do")
        _set_status(db, run_id, summary.status)
        (progress or Progress()).end(summary)
        return summary
    _check_generators(config)
    serials = [r["serial"] for r in db.query("SELECT serial FROM run_devices WHERE run_id = ? ORDER BY rowid", [run_id])]
    if "emulator" in config.devices:
        try:
            resolve_devices(("emulator",), s)  # after a reboot: start it again
        except RunError:
            pass  # its items wait; the other devices go on
    devices = _connect_all(serials, tolerate_missing=True)
    if not devices:
        raise RunError(f"none of run {run_id}'s devices ({', '.join(serials)}) is attached: connect one and resume")
    backend = _open_backend(config, s)
    try:
        recorded = _json(row["provenance"]).get("model") or {}
        if backend is not None and recorded.get("sha256") and backend.model_sha256 != recorded["sha256"]:
            raise RunError(f"run {run_id} used model {recorded.get('model')} (sha256 {recorded['sha256'][:12]}), "
                           f"now {backend.model} ({(backend.model_sha256 or '?')[:12]}): start a new run with --new")
        return _execute(run_id, db, config, tasks, devices, backend, progress or Progress(), s, db_path or s.db_path)
    finally:
        if backend is not None:
            backend.close()


def recheck(run_id: str, serial: str, *, settings: settings_module.Settings | None = None,
            db_path: Path | None = None, echo: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Judge again, on another device, every kernel a run found correct: the same source, a fresh
    verdict stored under the run's id, which the report counts beside the run's own (the run's
    metrics stay those of its devices). For a run timed on the host, `-d qemu-arm64` checks that
    its correct kernels are correct on arm64 too. A kernel already rechecked there is not judged
    again, so an interrupted recheck goes on where it stopped."""
    from .judge.evaluate import evaluate
    from .tasks import get_task

    s = settings or settings_module.load()
    db = store.open_db(db_path or s.db_path)
    _run_row(db, run_id)
    device = get_device(serial)
    rows = []
    correct = list(db.query(
        "SELECT a.task, a.generator, a.mode, e.candidate, e.candidate_sha256, d.serial FROM attempts a "
        "JOIN evaluations e ON e.id = a.best_evaluation_id JOIN devices d ON d.id = e.device_id "
        "WHERE a.run_id = ? AND e.verdict = 'correct' ORDER BY a.id", [run_id]))
    for a in correct:
        if a["serial"] == device.serial:
            continue
        done = list(db.query("SELECT e.verdict, e.reason FROM evaluations e JOIN devices d ON d.id = e.device_id "
                             "WHERE e.run_id = ? AND e.task = ? AND e.candidate_sha256 = ? AND d.serial = ? "
                             "ORDER BY e.id DESC LIMIT 1", [run_id, a["task"], a["candidate_sha256"], device.serial]))
        if done:
            verdict, reason = done[0]["verdict"], done[0]["reason"]
        else:
            judged = evaluate(get_task(a["task"]), a["candidate"], device, db=db, run_id=run_id, settings=s)
            verdict, reason = judged.verdict, judged.reason
        row = {"task": a["task"], "generator": a["generator"], "mode": a["mode"], "judged_on": a["serial"],
               "rechecked_on": device.serial, "verdict": verdict, "reason": reason}
        rows.append(row)
        echo(f"{a['task']} {a['generator']}/{a['mode']}: correct on {a['serial']}, {verdict} on {device.serial}"
             + (f" ({reason})" if reason and verdict != "correct" else ""))
    return rows


@dataclass(frozen=True)
class RunInfo:
    """One line of `mkbench run list`."""

    id: str
    created_at: float
    status: str
    planned: int
    finished: int
    failed: int
    generators: tuple[str, ...]
    devices: tuple[str, ...]
    tasks: int


def list_runs(db_path: Path | None = None) -> list[RunInfo]:
    """Every run in the database, newest first, with how far it got."""
    db = store.open_db(db_path or settings_module.load().db_path)
    runs = []
    for row in db.query("SELECT id, created_at, status, config FROM runs ORDER BY created_at DESC"):
        config = _json(row["config"])
        if "run" not in config:
            continue  # a run row not written by run_all (none yet; kept for older tools)
        summary = _summarise(db, row["id"], 0, 0.0, "")
        devices = tuple(r["serial"] for r in db.query("SELECT serial FROM run_devices WHERE run_id = ? ORDER BY rowid", [row["id"]]))
        runs.append(RunInfo(row["id"], row["created_at"], row["status"], summary.planned, summary.finished, summary.failed,
                            tuple(config["run"].get("generators", ())), devices, len(config.get("tasks", ()))))
    return runs


def show_run(run_id: str, db_path: Path | None = None) -> dict:
    """A run's row: config, provenance and devices, as JSON-able values."""
    db = store.open_db(db_path or settings_module.load().db_path)
    row = _run_row(db, run_id)
    return {**{k: v for k, v in row.items() if k not in ("config", "provenance")},
            "config": _json(row["config"]), "provenance": _json(row["provenance"]),
            "devices": list(db.query("SELECT serial, slot, device_id, status, detail FROM run_devices WHERE run_id = ?", [run_id]))}


def _check_generators(config: RunConfig) -> None:
    """Make each selected generator once, so a missing one stops the run before it starts."""
    for name in config.generators:
        for mode in config.modes:
            generator = GENERATORS[name].make(mode, config)
            if getattr(generator, "name", name) != name:
                raise RunError(f"generator registered as {name!r} calls itself {generator.name!r}")


def _connect_all(serials: list[str], tolerate_missing: bool = False) -> list[Device]:
    devices = []
    for serial in serials:
        try:
            device = get_device(serial)
            device.fingerprint()
            devices.append(device)
        except (DeviceNotFound, DeviceLost, RuntimeError, OSError, ValueError) as error:
            if not tolerate_missing:
                raise RunError(f"device {serial}: {error}: see `mkbench devices`") from None
    return devices


def _open_backend(config: RunConfig, s: settings_module.Settings):
    if not any(GENERATORS[g].uses_llm for g in config.generators):
        return None
    from .llm.config import open_backend

    try:
        return open_backend(config.model, s)
    except Exception as error:
        raise RunError(f"cannot open the model ({config.model or os.environ.get('MKBENCH_LLM') or 'default'}): "
                       f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None


def _set_status(db, run_id: str, status: str) -> None:
    with store.transaction(db):
        db.conn.execute("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", [status, time.time(), run_id])


def _mark_device(db, run_id: str, serial: str, status: str, detail: str, device_key: str | None = None) -> None:
    with store.transaction(db):
        db.conn.execute("UPDATE run_devices SET status = ?, detail = ?, device_id = COALESCE(?, device_id), updated_at = ? "
                        "WHERE run_id = ? AND serial = ?", [status, detail, device_key, time.time(), run_id, serial])


def _summarise(db, run_id: str, done_now: int, seconds: float, message: str) -> RunSummary:
    items = plan(run_id, db)
    done = finished_items(db, run_id)
    slot_of = {r["device_id"]: r["slot"] for r in db.query("SELECT device_id, slot FROM run_devices WHERE run_id = ?", [run_id])}
    failed_items = {WorkItem(a["task"], a["generator"], a["mode"], slot_of.get(a["device_id"], a["device_id"]))
                    for a in db.query("SELECT task, generator, mode, device_id FROM attempts WHERE run_id = ? AND status = 'failed'", [run_id])}
    failed = len(failed_items - done)
    pending = len([i for i in items if i not in done])
    lost = tuple(r["serial"] for r in db.query("SELECT serial FROM run_devices WHERE run_id = ? AND status = 'lost'", [run_id]))
    status = "finished" if pending == 0 else "interrupted"
    if pending and not message:
        message = f"resume with `mkbench run resume {run_id}`"
    return RunSummary(run_id, status, len(items), len(done), failed, pending, done_now, lost, seconds, message)


def _execute(run_id: str, db, config: RunConfig, tasks: list[Task], devices: list[Device], backend,
             progress: Progress, s: settings_module.Settings, db_path: Path) -> RunSummary:
    """Do every unfinished item of the run with the devices at hand; returns when all are done or
    nothing more can be done (devices lost, too many failures, Ctrl-C)."""
    started = time.monotonic()
    with _file_lock(s.home / "locks" / f"run-{run_id}.lock", f"run {run_id} is running in another mkbench process"):
        with ExitStack() as held:
            for d in devices:
                held.enter_context(_file_lock(s.home / "locks" / f"device-{_slug(d.serial)}.lock",
                                              f"device {d.serial} is in use by another mkbench run"))
            return _execute_locked(run_id, db, config, tasks, devices, backend, progress, db_path, started)


def _execute_locked(run_id, db, config, tasks, devices, backend, progress, db_path, started) -> RunSummary:
    _set_status(db, run_id, "running")
    slot_rows = {r["serial"]: r["slot"] for r in db.query("SELECT serial, slot FROM run_devices WHERE run_id = ?", [run_id])}
    items = plan(run_id, db)
    done = finished_items(db, run_id)
    todo = [i for i in items if i not in done]
    slots = list(dict.fromkeys(slot_rows.values()))
    queue = WorkQueue(todo, slots)
    machine = MachineLock()
    shared_backend = SharedBackend(backend, machine) if backend is not None else None
    state = _RunState(run_id, config, {t.name: t for t in tasks}, queue, machine, shared_backend, progress, db_path)

    modes = len(config.modes)
    stages: dict[str, list[int]] = {}
    for item in items:
        entry = stages.setdefault(Progress.stage_of(item, modes), [0, 0])
        entry[0] += 1
        entry[1] += item in done
    serving = Counter(slot_rows[d.serial] for d in devices for _ in range(_workers_for(d, config)))
    progress.begin(run_id, {k: (v[0], v[1]) for k, v in stages.items()},
                   {k: serving[k.rsplit(" @ ", 1)[1]] for k in stages})
    for serial, slot in slot_rows.items():
        if slot != POOL and serial not in {d.serial for d in devices} and queue.pending():
            progress.note(f"device {serial} is not attached: its items wait for a later resume")

    threads = []
    for device in devices:
        lock = threading.Lock()
        for index in range(_workers_for(device, config)):
            thread = threading.Thread(target=state.work, args=(device, device.serial, slot_rows[device.serial], index, lock),
                                      name=f"mkbench-{device.serial}-{index}", daemon=True)
            threads.append(thread)
            thread.start()
    interrupted = False
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.5)
    except KeyboardInterrupt:
        interrupted = True
        queue.stop()
        progress.note("stopping: the items in progress finish first (Ctrl-C again to stop at once; they are redone on resume)")
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(0.5)
        except KeyboardInterrupt:
            _set_status(store.open_db(db_path), run_id, "interrupted")
            raise
    db = store.open_db(db_path)  # this thread's connection may have waited long; a fresh one is cheap
    message = state.stop_reason or ("stopped by Ctrl-C" if interrupted else "")
    summary = _summarise(db, run_id, state.done_now, time.monotonic() - started, message)
    if summary.pending and summary.lost_devices and not message:
        summary = replace(summary, message=f"lost {', '.join(summary.lost_devices)}: reconnect and `mkbench run resume {run_id}`")
    _set_status(db, run_id, summary.status)
    progress.end(summary)
    return summary


def _workers_for(device: Device, config: RunConfig) -> int:
    return 1 if device.serial == HOST else config.workers_per_device


class _RunState:
    """What the workers of one run share: the queue, the locks, the model, the failure count."""

    def __init__(self, run_id, config, tasks, queue, machine, backend, progress, db_path):
        self.run_id, self.config, self.tasks, self.queue = run_id, config, tasks, queue
        self.machine, self.backend, self.progress, self.db_path = machine, backend, progress, db_path
        self.budget = Budget(**config.budget)
        self._lock = threading.Lock()
        self.failures_in_a_row = 0
        self.done_now = 0
        self.stop_reason = ""

    def work(self, device: Device | None, serial: str, slot: str, index: int, evaluation_lock: threading.Lock) -> None:
        """One worker: take the slot's items and do them on the device; survive its loss."""
        db = store.open_db(self.db_path)
        recorder = CallLog(db=db)
        chat = Chat(self.backend, recorder, on_overflow="trim") if self.backend is not None else None
        generators: dict[tuple[str, str], Generator] = {}
        worker = f"{_slug(serial)}-{index}"
        self.queue.serving(slot, +1)
        try:
            self._serve(db, recorder, chat, generators, worker, device, serial, slot, evaluation_lock)
        finally:
            self.queue.serving(slot, -1)

    def _serve(self, db, recorder, chat, generators, worker, device, serial, slot, evaluation_lock) -> None:
        while True:
            if device is None:
                self.queue.serving(slot, -1)
                device = self._reconnect(db, serial, slot)
                self.queue.serving(slot, +1)
                if device is None:
                    return
            key = device_id(device)
            item = self.queue.take(slot)
            if item is None:
                return
            proxy = WorkerDevice(device, worker, evaluation_lock, self.machine if serial == HOST else None)
            recorder.calls.clear()
            started = time.monotonic()
            result, error = None, None
            try:
                generator = generators.get((item.generator, item.mode))
                if generator is None:
                    generator = generators[(item.generator, item.mode)] = self._make(item, worker)
                with self.machine.shared() if serial != HOST else _nothing():
                    result = generator.solve(self.tasks[item.task], proxy, chat, self.budget, db, self.run_id)
            except DeviceLost as lost:
                proxy.release()
                self.queue.give_back(item)
                _mark_device(db, self.run_id, serial, "lost", f"lost at {time.strftime('%H:%M:%S')}: {str(lost)[:200]}")
                self.progress.note(f"device {serial} lost ({str(lost)[:120]}): {item.task} goes back to the queue")
                device = None
                continue
            except Exception as fault:  # the harness failed, not the candidate: recorded, retried on resume
                error = f"{type(fault).__name__}: {str(fault).splitlines()[0] if str(fault) else ''}"[:500]
            finally:
                proxy.release()
            seconds = time.monotonic() - started
            _, status = record_attempt(db, self.run_id, item, key, result, list(recorder.calls), error, seconds)
            self.queue.done(item)
            if status == "failed" and error is None:
                error = f"the generator gave up: {result.stopped_by}"
            self._count(item, serial, result, error, seconds)

    def _make(self, item: WorkItem, worker: str) -> Generator:
        generator = GENERATORS[item.generator].make(item.mode, self.config)
        if hasattr(generator, "worker"):
            generator.worker = worker  # concurrent workers never share a build folder
        return generator

    def _count(self, item: WorkItem, serial: str, result: AttemptResult | None, error: str | None, seconds: float) -> None:
        with self._lock:
            self.done_now += 1
            self.failures_in_a_row = self.failures_in_a_row + 1 if error else 0
            if error and self.failures_in_a_row >= self.config.failures_in_a_row and not self.queue.stopping:
                self.stop_reason = (f"stopped after {self.failures_in_a_row} failed attempts in a row (last: {error}): "
                                    f"fix it, then `mkbench run resume {self.run_id}`")
                self.queue.stop()
        if error:
            line = f"failed: {error}"
        elif result.best is None:
            line = f"no candidate ({result.stopped_by})"
        else:
            best = result.best
            speed = f" {best.speedup:.2f}x" if best.speedup is not None else (" (not timed)" if best.correct else "")
            line = f"{best.verdict}{speed}"
        self.progress.item(Progress.stage_of(item, len(self.config.modes)),
                           ItemDone(item, serial, "failed" if error else "finished", line, seconds))
        if self.stop_reason and error:
            self.progress.note(self.stop_reason)

    def _reconnect(self, db, serial: str, slot: str, poll_seconds: float = 5.0) -> Device | None:
        """Wait for a lost device to come back; give up once only its items are left and
        reconnect_seconds have passed (or its slot was finished by others)."""
        lost_at = time.monotonic()
        while not self.queue.stopping:
            if self.queue.slot_done(slot):
                return None
            try:
                device = get_device(serial)
                device.fingerprint()
            except (DeviceNotFound, DeviceLost, RuntimeError, OSError, ValueError):
                if time.monotonic() - lost_at > self.config.reconnect_seconds and self.queue.quiet_but(slot):
                    self.progress.note(f"device {serial} did not come back in {self.config.reconnect_seconds:.0f} s: "
                                       "its items stay pending")
                    return None
                time.sleep(min(poll_seconds, max(0.05, self.config.reconnect_seconds / 10)))
                continue
            recorded = db.conn.execute("SELECT device_id FROM run_devices WHERE run_id = ? AND serial = ?",
                                       [self.run_id, serial]).fetchone()[0]
            if recorded and device_id(device) != recorded:
                _mark_device(db, self.run_id, serial, "lost", "came back as a different device (fingerprint changed)")
                self.progress.note(f"device {serial} came back with a different fingerprint: not used for this run")
                return None
            _mark_device(db, self.run_id, serial, "active", f"back at {time.strftime('%H:%M:%S')}")
            self.progress.note(f"device {serial} is back")
            return device
        return None


@contextmanager
def _nothing() -> Iterator[None]:
    yield
