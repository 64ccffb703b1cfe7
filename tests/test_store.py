"""The results store: schema versions, migrations, atomic rows, a killed writer."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from mkbench import store


def test_open_creates_current_schema_in_wal_mode(tmp_path):
    db = store.open_db(tmp_path / "r.sqlite")
    assert store.schema_version(db) == store.SCHEMA_VERSION
    assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"runs", "evaluations", "measurements", "builds", "devices", "attempts", "llm_calls", "steps"} <= set(db.table_names())


def test_reopening_applies_only_missing_migrations(tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite"
    store.open_db(path).conn.close()
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS + ["CREATE TABLE later_table (x INTEGER)"])
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(store.MIGRATIONS))
    db = store.open_db(path)
    assert store.schema_version(db) == store.SCHEMA_VERSION
    assert "later_table" in db.table_names()


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this mkbench"):
        store.open_db(path)


def test_a_failed_transaction_leaves_nothing(tmp_path):
    db = store.open_db(tmp_path / "r.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction(db):
            db.conn.execute("INSERT INTO builds (created_at, target, what, cache_key, ok, seconds, log) "
                            "VALUES (0, 'host', 'native', 'k', 1, 0, 'first')")
            db.conn.execute("INSERT INTO builds (target) VALUES ('host')")  # NOT NULL columns missing
    assert db["builds"].count == 0


def test_a_killed_writer_leaves_whole_rows_only(tmp_path):
    """Kill a process in the middle of a stream of transactional writes: every row present is whole."""
    path = tmp_path / "r.sqlite"
    store.open_db(path).conn.close()
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from mkbench import store
        db = store.open_db(Path({str(path)!r}))
        print("ready", flush=True)
        i = 0
        while True:
            with store.transaction(db):
                db.conn.execute("INSERT INTO builds (created_at, target, what, cache_key, ok, seconds, log) "
                                "VALUES (0, 'host', 'native', ?, 1, 0, ?)", (str(i), "x" * 10000))
                db.conn.execute("UPDATE builds SET log = log || 'END' WHERE cache_key = ?", (str(i),))
            i += 1
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    import time

    time.sleep(0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    db = store.open_db(path)
    logs = [row["log"] for row in db["builds"].rows]
    assert logs, "the writer should have committed some rows before it was killed"
    assert all(log.endswith("END") for log in logs)
