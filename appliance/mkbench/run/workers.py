"""The workers of a run: one thread per device (more with workers_per_device), each taking its
slot's items from the queue and doing them on its device, until the run is done or stops.

While the host itself measures, this run's other work on the machine (LLM calls, other devices'
items) waits, so host timings are never taken next to a compiler. A device that goes away
(DeviceLost) is marked lost, its item goes back to the queue (to another device of a pooled run,
or to wait for the device to come back), and the run goes on with the others. Five failed
attempts in a row (a broken harness) stop the run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Iterator

from .. import settings as settings_module
from .. import store
from ..agents import AttemptResult, Budget, Generator
from ..agents.attempt import harness_error, record_failure, run_attempt
from ..devices import Device, DeviceLost, DeviceNotFound, device_id, get_device
from ..filelock import Busy, held_or_busy
from ..llm.chat import Chat
from ..store import rows
from ..tasks import Task
from .config import GENERATORS, HOST, RunConfig, RunError
from .plan import POOL, RunSummary, WorkItem, finished_items, plan, summarise
from .progress import ItemDone, Progress
from .sharing import CallLog, MachineLock, SharedBackend, WorkerDevice, slug
from .work_queue import WorkQueue

def execute(run_id: str, db, config: RunConfig, tasks: list[Task], devices: list[Device], backend,
            progress: Progress, settings: settings_module.Settings) -> RunSummary:
    """Do every unfinished item of the run with the devices at hand; returns when all are done or
    nothing more can be done (devices lost, too many failures, Ctrl-C or SIGTERM)."""
    started = time.monotonic()
    try:
        with held_or_busy(settings.home / "locks" / f"run-{run_id}.lock", f"run {run_id} is running in another mkbench process"):
            with ExitStack() as held:
                for d in devices:
                    held.enter_context(held_or_busy(settings.home / "locks" / f"device-{slug(d.serial)}.lock",
                                                    f"device {d.serial} is in use by another mkbench run"))
                return _execute_locked(run_id, db, config, tasks, devices, backend, progress, settings, started)
    except Busy as busy:
        raise RunError(str(busy)) from None


def _execute_locked(run_id, db, config, tasks, devices, backend, progress, settings, started) -> RunSummary:
    rows.set_run_status(db, run_id, "running")
    slot_rows = {r["serial"]: r["slot"] for r in rows.run_devices(db, run_id)}
    items = plan(run_id, db)
    done = finished_items(db, run_id)
    todo = [i for i in items if i not in done]
    slots = list(dict.fromkeys(slot_rows.values()))
    queue = WorkQueue(todo, slots)
    machine = MachineLock()
    shared_backend = SharedBackend(backend, machine) if backend is not None else None
    state = _RunState(run_id, config, {t.name: t for t in tasks}, queue, machine, shared_backend, progress, settings)

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

    workers = []
    for device in devices:
        lock = threading.Lock()
        for index in range(_workers_for(device, config)):
            worker = _Worker(state.work, (device, device.serial, slot_rows[device.serial], index, lock), f"mkbench-{device.serial}-{index}")
            workers.append(worker)
    interrupted = False
    try:
        _wait_for(workers)
    except KeyboardInterrupt:
        interrupted = True
        queue.stop()
        progress.note("stopping: the items in progress finish first (Ctrl-C or SIGTERM again to stop at once; they are redone on resume)")
        try:
            _wait_for(workers)
        except KeyboardInterrupt:
            rows.set_run_status(store.open_db(settings.db_path), run_id, "interrupted")
            raise
    db = store.open_db(settings.db_path)  # this thread's connection may have waited long; a fresh one is cheap
    message = state.stop_reason or ("stopped by Ctrl-C or SIGTERM" if interrupted else "")
    summary = summarise(db, run_id, state.done_now, time.monotonic() - started, message)
    if summary.pending and summary.lost_devices and not message:
        summary = replace(summary, message=f"lost {', '.join(summary.lost_devices)}: reconnect and `mkbench run resume {run_id}`")
    rows.set_run_status(db, run_id, summary.status)
    progress.end(summary)
    return summary


class _Worker:
    """A worker thread that says when it has ended. Thread.join and is_alive cannot: a KeyboardInterrupt
    arriving inside join() makes is_alive() false for a thread that still runs (CPython 3.11), and
    the run would end under the items in progress instead of letting them finish."""

    def __init__(self, target, args: tuple, name: str):
        self.ended = threading.Event()
        threading.Thread(target=self._run, args=(target, args), name=name, daemon=True).start()

    def _run(self, target, args: tuple) -> None:
        try:
            target(*args)
        finally:
            self.ended.set()


def _wait_for(workers: list[_Worker]) -> None:
    """Until every worker has ended; sleeping, so Ctrl-C and SIGTERM land where nothing breaks."""
    while not all(w.ended.is_set() for w in workers):
        time.sleep(0.2)


def _workers_for(device: Device, config: RunConfig) -> int:
    return 1 if device.serial == HOST else config.workers_per_device


class _RunState:
    """What the workers of one run share: the queue, the locks, the model, the failure count."""

    def __init__(self, run_id, config, tasks, queue, machine, backend, progress, settings):
        self.run_id, self.config, self.tasks, self.queue = run_id, config, tasks, queue
        self.machine, self.backend, self.progress, self.settings = machine, backend, progress, settings
        self.budget = Budget(**config.budget)
        self._lock = threading.Lock()
        self.failures_in_a_row = 0
        self.done_now = 0
        self.stop_reason = ""

    def work(self, device: Device | None, serial: str, slot: str, index: int, evaluation_lock: threading.Lock) -> None:
        """One worker: take the slot's items and do them on the device; survive its loss."""
        db = store.open_db(self.settings.db_path)
        recorder = CallLog(db=db)
        chat = Chat(self.backend, recorder, on_overflow="trim") if self.backend is not None else None
        generators: dict[tuple[str, str], Generator] = {}
        worker = f"{slug(serial)}-{index}"
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
            item = self.queue.take(slot)
            if item is None:
                return
            proxy = WorkerDevice(device, worker, evaluation_lock, self.machine if serial == HOST else None)
            recorder.calls.clear()
            started = time.monotonic()
            task = self.tasks[item.task]
            result, error, row = None, None, None
            try:
                generator = generators.get((item.generator, item.mode))
                if generator is None:
                    generator = generators[(item.generator, item.mode)] = self._make(item, worker)
                with self.machine.shared() if serial != HOST else _nothing():
                    row, result, error = run_attempt(generator, task, proxy, chat, self.budget, db, self.run_id)
            except DeviceLost as lost:
                proxy.release()
                self.queue.give_back(item)
                rows.mark_run_device(db, self.run_id, serial, "lost", f"lost at {time.strftime('%H:%M:%S')}: {str(lost)[:200]}")
                self.progress.note(f"device {serial} lost ({str(lost)[:120]}): {item.task} goes back to the queue")
                device = None
                continue
            except Exception as fault:  # the generator could not even be made: a fault of the harness
                error = harness_error(fault)
                row = record_failure(db, self.run_id, item.generator, item.mode, task, proxy, self.budget, error)
            finally:
                proxy.release()
            rows.bind_calls(db, row.id, recorder.calls)
            rows.touch_run(db, self.run_id)
            self.queue.done(item)
            self._count(item, serial, result, error, time.monotonic() - started)

    def _make(self, item: WorkItem, worker: str) -> Generator:
        generator = GENERATORS[item.generator].make(item.mode, self.config, self.settings)
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
                device = get_device(serial, self.settings)
                device.fingerprint()
            except (DeviceNotFound, DeviceLost, RuntimeError, OSError, ValueError):
                if time.monotonic() - lost_at > self.config.reconnect_seconds and self.queue.quiet_but(slot):
                    self.progress.note(f"device {serial} did not come back in {self.config.reconnect_seconds:.0f} s: "
                                       "its items stay pending")
                    return None
                time.sleep(min(poll_seconds, max(0.05, self.config.reconnect_seconds / 10)))
                continue
            recorded = next(r["device_id"] for r in rows.run_devices(db, self.run_id) if r["serial"] == serial)
            if recorded and device_id(device) != recorded:
                rows.mark_run_device(db, self.run_id, serial, "lost", "came back as a different device (fingerprint changed)")
                self.progress.note(f"device {serial} came back with a different fingerprint: not used for this run")
                return None
            rows.mark_run_device(db, self.run_id, serial, "active", f"back at {time.strftime('%H:%M:%S')}")
            self.progress.note(f"device {serial} is back")
            return device
        return None


@contextmanager
def _nothing() -> Iterator[None]:
    yield
