"""`mkbench run list` and `run show`: the runs in the database and how far each got."""

from __future__ import annotations

from dataclasses import dataclass

from .. import settings as settings_module
from .. import store
from ..store import rows
from .plan import run_row, summarise

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


def list_runs(settings: settings_module.Settings) -> list[RunInfo]:
    """Every run in the database, newest first, with how far it got."""
    db = store.open_db(settings.db_path)
    runs = []
    for row in db.query("SELECT id, created_at, status, config FROM runs ORDER BY created_at DESC"):
        config = rows.json_dict(row["config"])
        if "run" not in config:
            continue  # a run row not written by run_all (none yet; kept for older tools)
        summary = summarise(db, row["id"], 0, 0.0, "")
        devices = tuple(r["serial"] for r in rows.run_devices(db, row["id"]))
        runs.append(RunInfo(row["id"], row["created_at"], row["status"], summary.planned, summary.finished, summary.failed,
                            tuple(config["run"].get("generators", ())), devices, len(config.get("tasks", ()))))
    return runs


def show_run(run_id: str, settings: settings_module.Settings) -> dict:
    """A run's row: config, provenance and devices, as JSON-able values."""
    db = store.open_db(settings.db_path)
    row = run_row(db, run_id)
    return {**{k: v for k, v in row.items() if k not in ("config", "provenance")},
            "config": rows.json_dict(row["config"]), "provenance": rows.json_dict(row["provenance"]),
            "devices": rows.run_devices(db, run_id)}
