"""Starting a run, or finding and resuming it: the run's row, its devices, the model, then the workers.

    summary = run_all(config, settings)      # the same config again finds its run and resumes it
    summary = resume("20260101-120000-3fa2c1", settings)

An attempt row ends only when its item is done (finished, or failed for a fault of the harness); a
resumed run skips every item with a finished attempt and redoes the rest, so a run killed at any
moment (kill -9 included) loses nothing recorded and repeats nothing finished. A resume refuses
when the selected task specs, the model or the generators' code and prompts changed since the run
started (its attempts would mix two versions).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace

from .. import __version__
from .. import settings as settings_module
from .. import store
from ..devices import Device, DeviceLost, DeviceNotFound, device_id, get_device, store_device
from ..store import rows
from ..tasks import suite_hash
from .config import GENERATORS, RunConfig, RunError, resolve_devices, select_tasks
from .plan import POOL, RunSummary, finished_items, plan, run_row, summarise
from .progress import Progress
from .provenance import generators_fingerprint, provenance
from .workers import execute


def run_all(config: RunConfig, settings: settings_module.Settings, *, new: bool = False, run_id: str | None = None,
            progress: Progress | None = None) -> RunSummary:
    """Run a config: resume its unfinished run (same selection), or start one. A finished run with
    the same selection is returned as it is unless `new` asks for another."""
    db = store.open_db(settings.db_path)
    key = config.key()
    if run_id is None and not new:
        existing = rows.latest_run_with_key(db, key)
        if existing:
            return resume(existing, settings, progress=progress)
    tasks = select_tasks(config, settings)
    _check_generators(config, settings)
    serials = resolve_devices(config.devices, settings)
    if run_id is None:
        base = run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{key[:6]}"
        while rows.run_row(db, run_id) is not None:
            run_id = f"{base}-{db['runs'].count_where('id LIKE ?', [base + '%']) + 1}"
    elif rows.run_row(db, run_id) is not None:
        raise RunError(f"run {run_id} exists: resume it with `mkbench run resume {run_id}`")
    devices = _connect_all(serials, settings)
    backend = _open_backend(config, settings)
    try:
        record = {
            "id": run_id, "status": "running", "mkbench_version": __version__, "mnn_commit": settings_module.MNN_COMMIT,
            "suite_hash": suite_hash(tasks), "config_key": key,
            "config": {"run": config.to_dict(), "tasks": [
                {"name": t.name, "category": t.category, "kind": t.mnn.kind if t.mnn else None, "operator": t.operator}
                for t in tasks]},
            "provenance": provenance(config, tasks, devices, backend, settings),
        }
        rows.create_run(db, record, [(d.serial, POOL if config.pool else d.serial, device_id(d)) for d in devices])
        for device in devices:
            store_device(db, device)
        return execute(run_id, db, config, tasks, devices, backend, progress or Progress(), settings)
    finally:
        if backend is not None:
            backend.close()


def resume(run_id: str, settings: settings_module.Settings, *, progress: Progress | None = None) -> RunSummary:
    """Continue a run where it stopped: every item without a finished attempt is done now."""
    db = store.open_db(settings.db_path)
    row = run_row(db, run_id)
    stored = json.loads(row["config"])
    config = RunConfig.from_mapping(stored["run"])
    names = [t["name"] for t in stored["tasks"]]
    tasks = select_tasks(replace(config, tasks=tuple(names), categories=()), settings)
    if suite_hash(tasks) != row["suite_hash"]:
        raise RunError(f"the task specs of run {run_id} changed since it started (suite hash differs): "
                       "start a new run with `mkbench run-all --new ...`")
    recorded = json.loads(row["provenance"] or "{}")
    recorded_generators = (recorded.get("generators") or {}).get("sha256")
    if recorded_generators and recorded_generators != generators_fingerprint():
        raise RunError(f"the generators' code or prompts changed since run {run_id} started: its attempts would mix "
                       "two versions; start a new run with --new (or resume with the code it started with)")
    todo = [i for i in plan(run_id, db) if i not in finished_items(db, run_id)]
    if not todo:
        summary = summarise(db, run_id, 0, 0.0, "nothing left to do")
        rows.set_run_status(db, run_id, summary.status)
        (progress or Progress()).end(summary)
        return summary
    _check_generators(config, settings)
    serials = [r["serial"] for r in rows.run_devices(db, run_id)]
    if "emulator" in config.devices:
        try:
            resolve_devices(("emulator",), settings)  # after a reboot: start it again
        except RunError:
            pass  # its items wait; the other devices go on
    devices = _connect_all(serials, settings, tolerate_missing=True)
    if not devices:
        raise RunError(f"none of run {run_id}'s devices ({', '.join(serials)}) is attached: connect one and resume")
    backend = _open_backend(config, settings)
    try:
        model = recorded.get("model") or {}
        if backend is not None and model.get("sha256") and backend.model_sha256 != model["sha256"]:
            raise RunError(f"run {run_id} used model {model.get('model')} (sha256 {model['sha256'][:12]}), "
                           f"now {backend.model} ({(backend.model_sha256 or '?')[:12]}): start a new run with --new")
        return execute(run_id, db, config, tasks, devices, backend, progress or Progress(), settings)
    finally:
        if backend is not None:
            backend.close()


def _check_generators(config: RunConfig, settings: settings_module.Settings) -> None:
    """Make each selected generator once, so a missing one stops the run before it starts."""
    for name in config.generators:
        for mode in config.modes:
            generator = GENERATORS[name].make(mode, config, settings)
            if getattr(generator, "name", name) != name:
                raise RunError(f"generator registered as {name!r} calls itself {generator.name!r}")


def _connect_all(serials: list[str], settings: settings_module.Settings, tolerate_missing: bool = False) -> list[Device]:
    devices = []
    for serial in serials:
        try:
            device = get_device(serial, settings)
            device.fingerprint()
            devices.append(device)
        except (DeviceNotFound, DeviceLost, RuntimeError, OSError, ValueError) as error:
            if not tolerate_missing:
                raise RunError(f"device {serial}: {error}: see `mkbench devices`") from None
    return devices


def _open_backend(config: RunConfig, settings: settings_module.Settings):
    if not any(GENERATORS[g].uses_llm for g in config.generators):
        return None
    from ..llm.config import open_backend

    try:
        return open_backend(config.model, settings)
    except Exception as error:
        raise RunError(f"cannot open the model ({config.model or os.environ.get('MKBENCH_LLM') or 'default'}): "
                       f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
