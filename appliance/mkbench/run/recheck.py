"""Judging a run's correct kernels again on another device (arm64 under qemu for a host run)."""

from __future__ import annotations

from typing import Callable

from .. import settings as settings_module
from .. import store
from ..devices import get_device
from ..judge.evaluate import evaluate
from ..tasks import get_task, task_roots
from .plan import run_row

def recheck(run_id: str, serial: str, settings: settings_module.Settings, *,
            echo: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Judge again, on another device, every kernel a run found correct: the same source, a fresh
    verdict stored under the run's id, which the report counts beside the run's own (the run's
    metrics stay those of its devices). For a run timed on the host, `-d qemu-arm64` checks that
    its correct kernels are correct on arm64 too. A kernel already rechecked there is not judged
    again, so an interrupted recheck goes on where it stopped."""
    db = store.open_db(settings.db_path)
    run_row(db, run_id)
    device = get_device(serial, settings)
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
            judged = evaluate(get_task(a["task"], task_roots(settings)), a["candidate"], device, settings, db=db, run_id=run_id)
            verdict, reason = judged.verdict, judged.reason
        row = {"task": a["task"], "generator": a["generator"], "mode": a["mode"], "judged_on": a["serial"],
               "rechecked_on": device.serial, "verdict": verdict, "reason": reason}
        rows.append(row)
        echo(f"{a['task']} {a['generator']}/{a['mode']}: correct on {a['serial']}, {verdict} on {device.serial}"
             + (f" ({reason})" if reason and verdict != "correct" else ""))
    return rows
