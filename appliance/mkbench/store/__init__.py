"""The results store: one SQLite file, the interface between every stage.

This module owns the connection and the schema; `rows.py` owns every write (one named function
per kind of row, so each table has one writer) and the queries several stages share.

Rows are written inside transactions, so a killed process leaves either a whole row or
none. The schema is versioned with SQLite's `user_version`; `MIGRATIONS[i]` upgrades a
database from version i to i+1, and opening a database applies what is missing.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

# Each entry is the SQL that takes the schema one version forward. Never edit a released
# entry: append a new one.
MIGRATIONS: list[str] = [
    # v1: the first schema.
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        status TEXT NOT NULL,               -- running | finished | interrupted
        mkbench_version TEXT NOT NULL,
        mnn_commit TEXT,
        suite_hash TEXT,
        config TEXT NOT NULL                -- JSON: selection, generators, model, sampling
    );
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,                -- sha256 of the fingerprint
        serial TEXT NOT NULL,
        emulated INTEGER NOT NULL,
        abi TEXT NOT NULL,
        fingerprint TEXT NOT NULL,          -- JSON
        first_seen REAL NOT NULL
    );
    CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        target TEXT NOT NULL,               -- host | arm64
        what TEXT NOT NULL,                 -- native | candidate | converter | composite (a candidate converter)
        cache_key TEXT NOT NULL,
        ok INTEGER NOT NULL,
        seconds REAL NOT NULL,
        log TEXT NOT NULL
    );
    CREATE TABLE evaluations (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        run_id TEXT,
        task TEXT NOT NULL,
        task_sha256 TEXT NOT NULL,
        kind TEXT NOT NULL,                 -- cpu-execution | geometry | composite
        device_id TEXT NOT NULL,
        candidate_sha256 TEXT NOT NULL,
        candidate TEXT NOT NULL,            -- the C++ source as judged
        verdict TEXT NOT NULL,              -- see judge.verdict.VERDICTS
        reason TEXT NOT NULL,               -- one line
        build_id INTEGER,
        compiler_output TEXT,
        max_abs_error REAL,
        max_rel_error REAL,
        native_median_ms REAL,
        candidate_median_ms REAL,
        speedup REAL,
        speedup_low REAL,
        speedup_high REAL,
        timing_reportable INTEGER NOT NULL, -- 0 under emulation
        served_by TEXT,                     -- JSON: which execution served each op
        judge_settings TEXT NOT NULL,       -- JSON: threads, precision, hints
        stage_seconds TEXT NOT NULL,        -- JSON: build / deploy / run / compare
        flags TEXT NOT NULL                 -- JSON list: review flags (implausible speedup, ...)
    );
    CREATE INDEX evaluations_task ON evaluations(task);
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        evaluation_id INTEGER NOT NULL REFERENCES evaluations(id),
        side TEXT NOT NULL,                 -- native | candidate
        round INTEGER NOT NULL,
        input_shapes TEXT NOT NULL,         -- JSON
        iterations INTEGER NOT NULL,
        median_ms REAL NOT NULL,
        times_ms TEXT NOT NULL,             -- JSON list, per iteration
        device_state TEXT                   -- JSON: frequency / temperature before and after
    );
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        run_id TEXT NOT NULL,
        task TEXT NOT NULL,
        generator TEXT NOT NULL,            -- one-shot | pass@k | moka
        mode TEXT NOT NULL,                 -- whole-file | scaffolded
        device_id TEXT NOT NULL,
        best_evaluation_id INTEGER,
        status TEXT NOT NULL,               -- finished | failed
        summary TEXT NOT NULL               -- JSON
    );
    CREATE TABLE steps (
        id INTEGER PRIMARY KEY,
        attempt_id INTEGER NOT NULL REFERENCES attempts(id),
        position INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL               -- JSON: prompt, answer, tool calls, verdict
    );
    CREATE TABLE llm_calls (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        attempt_id INTEGER,
        role TEXT,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        model_sha256 TEXT,
        seed INTEGER,
        temperature REAL,
        max_tokens INTEGER,
        prompt TEXT NOT NULL,               -- JSON list of messages
        completion TEXT NOT NULL,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        wall_seconds REAL NOT NULL,
        tokens_per_second REAL
    );
    """,
    # v2: runs that resume and record their provenance; devices per run (lost or not); noise floors.
    """
    ALTER TABLE runs ADD COLUMN config_key TEXT;          -- sha256 of the selection: the same command finds its run
    ALTER TABLE runs ADD COLUMN provenance TEXT;          -- JSON: versions, MNN, toolchains, model, sampling, devices
    ALTER TABLE runs ADD COLUMN updated_at REAL;
    CREATE INDEX runs_config_key ON runs(config_key);
    CREATE TABLE run_devices (
        run_id TEXT NOT NULL REFERENCES runs(id),
        serial TEXT NOT NULL,               -- as selected: host, qemu-arm64, an adb serial
        slot TEXT NOT NULL,                 -- the queue it serves: its serial, or "pool"
        device_id TEXT,                     -- sha256 of its fingerprint, once seen
        status TEXT NOT NULL,               -- active | lost | done
        detail TEXT NOT NULL,               -- one line: why lost, when back
        updated_at REAL NOT NULL,
        PRIMARY KEY (run_id, serial)
    );
    CREATE TABLE noise_floors (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        device_id TEXT NOT NULL,
        task TEXT NOT NULL,                 -- a task name, or "*" for the device's overall floor
        low REAL NOT NULL,                  -- lowest native/native speedup seen
        high REAL NOT NULL                  -- highest
    );
    CREATE INDEX noise_floors_device ON noise_floors(device_id, task);
    CREATE INDEX attempts_item ON attempts(run_id, task, generator, mode, device_id);
    """,
    # v3: a judge no kernel can fool: fresh draws, the scale-aware check, flags that keep a kernel out of the wins.
    """
    ALTER TABLE evaluations ADD COLUMN draw_seed INTEGER;         -- this evaluation's fresh draws
    ALTER TABLE evaluations ADD COLUMN strict_ok INTEGER;         -- the scale-aware check (NULL: not reached)
    ALTER TABLE evaluations ADD COLUMN scaled_error REAL;         -- max |out - ref| / max |ref|, seeded sets
    ALTER TABLE evaluations ADD COLUMN native_scaled_error REAL;  -- native MNN's on the same draws
    ALTER TABLE evaluations ADD COLUMN blocked INTEGER;           -- correct, but kept out of the wins (flags, strict)
    ALTER TABLE evaluations ADD COLUMN timing_runs INTEGER;       -- candidate runs in the timed series
    ALTER TABLE evaluations ADD COLUMN timing_stopped_by TEXT;    -- precise | N runs | the budget
    ALTER TABLE evaluations ADD COLUMN noise_floor_low REAL;      -- the device's native/native band for the task,
    ALTER TABLE evaluations ADD COLUMN noise_floor_high REAL;     -- as the evaluation used it
    ALTER TABLE noise_floors ADD COLUMN settings_key TEXT;        -- sha256 of the judge settings it was measured with
    ALTER TABLE noise_floors ADD COLUMN task_sha256 TEXT;
    ALTER TABLE noise_floors ADD COLUMN speedup REAL;             -- native/native figure (low, high: its interval, widened to 1.0)
    ALTER TABLE noise_floors ADD COLUMN ratios TEXT;              -- JSON: its per-run ratios
    ALTER TABLE evaluations ADD COLUMN bound_ms REAL;             -- the time to move the task's bytes at the device's bandwidth
    ALTER TABLE evaluations ADD COLUMN bound_fraction REAL;       -- bound_ms / the candidate's time (1.0: memory speed)
    CREATE TABLE bandwidth_curves (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        device_id TEXT NOT NULL,
        curve TEXT NOT NULL                 -- JSON: sizes (bytes) and bytes_per_second, mnn/runner/bandwidth.cpp
    );
    CREATE INDEX bandwidth_curves_device ON bandwidth_curves(device_id);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def open_db(path: Path) -> sqlite_utils.Database:
    """Open (creating if needed) the results database and bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(path)
    db.conn.execute("PRAGMA busy_timeout = 30000")
    db.enable_wal()
    db.conn.execute("PRAGMA foreign_keys = ON")
    migrate(db)
    return db


def schema_version(db: sqlite_utils.Database) -> int:
    return db.conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Apply every migration the database lacks, each in its own transaction."""
    version = schema_version(db)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema v{version} is newer than this mkbench (v{SCHEMA_VERSION}): upgrade mkbench"
        )
    for target in range(version, SCHEMA_VERSION):
        with transaction(db):
            for statement in _split_sql(MIGRATIONS[target]):
                db.conn.execute(statement)
            db.conn.execute(f"PRAGMA user_version = {target + 1}")
    return schema_version(db)


def _split_sql(script: str) -> list[str]:
    # executescript() would commit behind our back; run the statements one by one instead.
    return [s.strip() for s in script.split(";") if s.strip() and not _only_comments(s)]


def _only_comments(statement: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in statement.splitlines())


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All-or-nothing writes: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
