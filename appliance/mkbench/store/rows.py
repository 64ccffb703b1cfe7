"""Every write to the results store, one named function per kind of row, and the shared reads.

Each table has exactly this one writer, so what a row holds and when its status moves is decided
in one place:

    builds         record_build                          one row per real build (never a cache hit)
    devices        store_device                          once per fingerprint
    evaluations    record_evaluation (+ measurements)    one verdict, its timings, in one transaction
    attempts       start_attempt -> finish_attempt | fail_attempt
                                                         one row per attempt: running -> finished | failed;
                                                         a retry after a harness fault is a new attempt
    steps          add_step                              an attempt's trajectory, in order
    llm_calls      record_llm_call, bind_calls           every model call, tied to its attempt
    runs           create_run, set_run_status, touch_run
    run_devices    (with create_run), mark_run_device
    noise_floors   record_noise_floor (read: noise_floor_for)
    bandwidth_curves  record_bandwidth_curve (read: bandwidth_curve)

Values that are dicts or lists are stored as JSON; a float that is not finite (a max error over
NaN outputs) is stored as its text, which SQLite's JSON functions can read.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Iterable

from . import transaction

# ---------------------------------------------------------------- encoding


def plain(value):
    """JSON SQLite can read: an infinite or NaN float becomes text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _encode(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(plain(value), sort_keys=True, default=str, ensure_ascii=False)
    return value


def _insert(db, table: str, row: dict[str, Any], verb: str = "INSERT") -> int:
    encoded = {k: _encode(v) for k, v in row.items()}
    cursor = db.conn.execute(
        f"{verb} INTO [{table}] ({', '.join(f'[{k}]' for k in encoded)}) VALUES ({', '.join('?' for _ in encoded)})",
        list(encoded.values()))
    return cursor.lastrowid


def json_dict(text: str | None) -> dict:
    """A JSON column read back as a dict ({} when empty, unreadable or not an object)."""
    try:
        value = json.loads(text or "{}")
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- builds and devices


def record_build(db, target: str, what: str, cache_key: str, ok: bool, seconds: float, log: str) -> int:
    """One real build (native, candidate, converter, composite); returns its id."""
    with transaction(db):
        return _insert(db, "builds", {"created_at": time.time(), "target": target, "what": what, "cache_key": cache_key,
                                      "ok": int(ok), "seconds": round(seconds, 3), "log": log})


def store_device(db, device_id: str, serial: str, emulated: bool, abi: str, fingerprint: dict) -> str:
    """A device's fingerprint, stored once under its id (sha256 of the fingerprint); returns the id."""
    with transaction(db):
        _insert(db, "devices", {"id": device_id, "serial": serial, "emulated": int(emulated), "abi": abi,
                                "fingerprint": fingerprint, "first_seen": time.time()}, verb="INSERT OR IGNORE")
    return device_id


# ---------------------------------------------------------------- evaluations


def record_evaluation(db, row: dict[str, Any], measurements: Iterable[dict] = ()) -> int:
    """One verdict and its timings, all or nothing; returns the evaluation's id."""
    with transaction(db):
        evaluation_id = _insert(db, "evaluations", {"created_at": time.time(), **row})
        for m in measurements:
            _insert(db, "measurements", {"evaluation_id": evaluation_id, **m})
    return evaluation_id


# ---------------------------------------------------------------- attempts, their steps and calls


def start_attempt(db, run_id: str | None, task: str, generator: str, mode: str, device_id: str, summary: dict) -> int:
    """The row of an attempt that begins now (status running); returns its id."""
    with transaction(db):
        return _insert(db, "attempts", {"created_at": time.time(), "run_id": run_id, "task": task, "generator": generator,
                                        "mode": mode, "device_id": device_id, "best_evaluation_id": None,
                                        "status": "running", "summary": summary})


def finish_attempt(db, attempt_id: int, status: str, best_evaluation_id: int | None, summary: dict) -> None:
    """End an attempt (finished, or failed when its generator gave up on an error of the harness,
    such as the model failing): its best evaluation and its summary, merged over the one it began with."""
    if status not in ("finished", "failed"):
        raise ValueError(f"an attempt ends finished or failed, not {status!r}")
    with transaction(db):
        row = db.conn.execute("SELECT summary, status FROM attempts WHERE id = ?", [attempt_id]).fetchone()
        if row is None:
            raise LookupError(f"no attempt {attempt_id}")
        if row[1] != "running":
            raise ValueError(f"attempt {attempt_id} already ended ({row[1]})")
        db.conn.execute("UPDATE attempts SET status = ?, best_evaluation_id = ?, summary = ? WHERE id = ?",
                        [status, best_evaluation_id, _encode({**json_dict(row[0]), **summary}), attempt_id])


def fail_attempt(db, attempt_id: int, error: str, summary: dict) -> None:
    """End a running attempt as failed by a fault of the harness (the next resume retries the item
    as a new attempt); an attempt that already ended keeps its status."""
    with transaction(db):
        row = db.conn.execute("SELECT summary, status FROM attempts WHERE id = ?", [attempt_id]).fetchone()
        if row is None or row[1] != "running":
            return
        db.conn.execute("UPDATE attempts SET status = 'failed', summary = ? WHERE id = ?",
                        [_encode({**json_dict(row[0]), **summary, "error": error}), attempt_id])


def add_step(db, attempt_id: int, position: int, role: str, content: dict) -> int:
    """One step of an attempt's trajectory (a call, a lint result, a tool call, a verdict)."""
    with transaction(db):
        return _insert(db, "steps", {"attempt_id": attempt_id, "position": position, "role": role,
                                     "content": json.dumps(plain(content), default=str, ensure_ascii=False)})


def record_llm_call(db, row: dict[str, Any]) -> int:
    """One model call; returns its id."""
    with transaction(db):
        return _insert(db, "llm_calls", {"created_at": time.time(), **row})


def bind_calls(db, attempt_id: int, call_ids: Iterable[int]) -> None:
    """Tie calls recorded without an attempt (a generator's own, before it had one) to it."""
    with transaction(db):
        for call_id in call_ids:
            db.conn.execute("UPDATE llm_calls SET attempt_id = ? WHERE id = ? AND attempt_id IS NULL", [attempt_id, call_id])


# ---------------------------------------------------------------- runs


def create_run(db, record: dict[str, Any], devices: Iterable[tuple[str, str, str | None]]) -> None:
    """A run's row and its devices: (serial as selected, slot, device id) each, all active."""
    now = time.time()
    with transaction(db):
        _insert(db, "runs", {"created_at": now, "updated_at": now, **record})
        for serial, slot, device_id in devices:
            _insert(db, "run_devices", {"run_id": record["id"], "serial": serial, "slot": slot, "device_id": device_id,
                                        "status": "active", "detail": "", "updated_at": now})


def set_run_status(db, run_id: str, status: str) -> None:
    with transaction(db):
        db.conn.execute("UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", [status, time.time(), run_id])


def touch_run(db, run_id: str) -> None:
    """The run did something now (an item ended)."""
    with transaction(db):
        db.conn.execute("UPDATE runs SET updated_at = ? WHERE id = ?", [time.time(), run_id])


def mark_run_device(db, run_id: str, serial: str, status: str, detail: str, device_id: str | None = None) -> None:
    """A run's device is active, lost or done (detail: one line, why and when)."""
    with transaction(db):
        db.conn.execute("UPDATE run_devices SET status = ?, detail = ?, device_id = COALESCE(?, device_id), updated_at = ? "
                        "WHERE run_id = ? AND serial = ?", [status, detail, device_id, time.time(), run_id, serial])


# ---------------------------------------------------------------- noise floors


def record_noise_floor(db, device_id: str, task: str, low: float, high: float, settings_key: str | None = None,
                       task_sha256: str | None = None, speedup: float | None = None, ratios=None) -> int:
    """Native against native on a device: the band of speedups that is noise for a task ("*": the
    device's overall floor), and for the judge settings it was measured with (settings_key; None:
    `mkbench selftest` of an older judge). The newest row per (device, task, settings) wins."""
    if not low <= high:
        raise ValueError(f"a noise floor needs low <= high, got {low} > {high}")
    with transaction(db):
        return _insert(db, "noise_floors", {"created_at": time.time(), "device_id": device_id, "task": task,
                                            "low": float(low), "high": float(high), "settings_key": settings_key,
                                            "task_sha256": task_sha256, "speedup": speedup,
                                            "ratios": json.dumps(list(ratios)) if ratios is not None else None})


def noise_floor_for(db, device_id: str, task: str, task_sha256: str, settings_key: str) -> tuple[float, float] | None:
    """The newest floor measured for exactly this device, task version and judge settings."""
    rows_found = list(db.query("SELECT low, high FROM noise_floors WHERE device_id = ? AND task = ? AND task_sha256 = ? "
                               "AND settings_key = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                               [device_id, task, task_sha256, settings_key]))
    return (rows_found[0]["low"], rows_found[0]["high"]) if rows_found else None


# ---------------------------------------------------------------- bandwidth curves


def record_bandwidth_curve(db, device_id: str, curve: dict) -> int:
    """A device's memory bandwidth per working-set size (judge/bounds.py), measured once per fingerprint."""
    with transaction(db):
        return _insert(db, "bandwidth_curves", {"created_at": time.time(), "device_id": device_id, "curve": json.dumps(curve)})


def bandwidth_curve(db, device_id: str) -> dict | None:
    """The newest bandwidth curve of a device, or None."""
    found = list(db.query("SELECT curve FROM bandwidth_curves WHERE device_id = ? ORDER BY created_at DESC, id DESC LIMIT 1",
                          [device_id]))
    return json_dict(found[0]["curve"]) if found else None


# ---------------------------------------------------------------- shared reads


def run_row(db, run_id: str) -> dict | None:
    rows = list(db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
    return rows[0] if rows else None


def run_devices(db, run_id: str) -> list[dict]:
    """A run's devices in the order they were selected: serial, slot, device_id, status, detail."""
    return list(db.query("SELECT serial, slot, device_id, status, detail FROM run_devices WHERE run_id = ? ORDER BY rowid",
                         [run_id]))


def ended_attempts(db, run_id: str, status: str) -> list[dict]:
    """(task, generator, mode, device_id) of a run's attempts that ended with this status."""
    return list(db.query("SELECT task, generator, mode, device_id FROM attempts WHERE run_id = ? AND status = ?",
                         [run_id, status]))


def latest_run_with_key(db, config_key: str) -> str | None:
    row = db.conn.execute("SELECT id FROM runs WHERE config_key = ? ORDER BY created_at DESC LIMIT 1", [config_key]).fetchone()
    return row[0] if row else None
