"""A run's work items and how far it got: what to do, what is done, what a resume skips.

A work item is (task, generator, mode, slot). A slot is a queue of items: by default each device
has its own (every device does every item, so devices can be compared); a pooled run gives its
devices one shared queue (each item done once, by whichever is free).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..store import rows
from .config import RunError

POOL = "pool"  # the slot of a pooled run's shared queue


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
    done_now: int  # attempts this session ended
    lost_devices: tuple[str, ...]
    seconds: float
    message: str  # one line: what to do next, if anything


def run_row(db, run_id: str) -> dict:
    """The run's row; RunError naming the database when there is none."""
    row = rows.run_row(db, run_id)
    if row is None:
        raise RunError(f"no run {run_id!r} in {db.conn.execute('PRAGMA database_list').fetchone()[2]}: see `mkbench run list`")
    return row


def plan(run_id: str, db) -> list[WorkItem]:
    """Every work item of a run, in order: task-major, so a partial run covers whole tasks first."""
    config = json.loads(run_row(db, run_id)["config"])
    slots = list(dict.fromkeys(r["slot"] for r in rows.run_devices(db, run_id)))
    return [WorkItem(t["name"], g, m, slot) for t in config["tasks"] for slot in slots
            for g in config["run"]["generators"] for m in config["run"]["modes"]]


def _items(db, run_id: str, status: str) -> set[WorkItem]:
    slot_of = {r["device_id"]: r["slot"] for r in rows.run_devices(db, run_id) if r["device_id"]}
    return {WorkItem(a["task"], a["generator"], a["mode"], slot_of.get(a["device_id"], a["device_id"]))
            for a in rows.ended_attempts(db, run_id, status)}


def finished_items(db, run_id: str) -> set[WorkItem]:
    """The items that have a finished attempt (what a resume skips)."""
    return _items(db, run_id, "finished")


def summarise(db, run_id: str, done_now: int, seconds: float, message: str) -> RunSummary:
    """How the run stands now, with what to do next when it is not done."""
    items = plan(run_id, db)
    done = finished_items(db, run_id)
    failed = len(_items(db, run_id, "failed") - done)
    pending = len([i for i in items if i not in done])
    lost = tuple(r["serial"] for r in rows.run_devices(db, run_id) if r["status"] == "lost")
    status = "finished" if pending == 0 else "interrupted"
    if pending and not message:
        message = f"resume with `mkbench run resume {run_id}`"
    return RunSummary(run_id, status, len(items), len(done), failed, pending, done_now, lost, seconds, message)
