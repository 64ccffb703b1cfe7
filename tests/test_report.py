"""The report: metrics on a hand-filled database with numbers worked out by hand, noise-floor
parity, Markdown, plots, and the CSV export's stable columns."""

from __future__ import annotations

import csv
import json
import math

import pytest

from mkbench import report, store
from mkbench.store import rows

TASKS = [
    {"name": "A", "category": "Unary", "kind": "cpu-execution", "operator": "Abs"},
    {"name": "B", "category": "Unary", "kind": "cpu-execution", "operator": "Neg"},
    {"name": "C", "category": "Binary", "kind": "cpu-execution", "operator": "Add"},
    {"name": "D", "category": "Binary", "kind": "composite", "operator": "Mod"},
]
HOST, EMU = "dev-host", "dev-emu"


def _evaluation(db, task: str, device: str, verdict: str, speedup: float | None = None) -> int:
    return rows.record_evaluation(db, {
        "run_id": "r1", "task": task, "task_sha256": "t" * 64, "kind": "cpu-execution", "device_id": device,
        "candidate_sha256": "c" * 64, "candidate": "// kernel", "verdict": verdict, "reason": "",
        "speedup": speedup, "speedup_low": speedup and speedup * 0.98, "speedup_high": speedup and speedup * 1.02,
        "native_median_ms": 1.0 if speedup else None, "candidate_median_ms": 1.0 / speedup if speedup else None,
        "timing_reportable": int(device == HOST), "judge_settings": {}, "stage_seconds": {}, "flags": []})


def _attempt(db, task, generator, device, verdict=None, speedup=None, candidates=None, seconds=10.0, status="finished"):
    """One attempt; candidates: list of booleans (correct?), the best first."""
    best = _evaluation(db, task, device, verdict, speedup) if verdict else None
    correct = verdict == "correct"
    candidates = candidates if candidates is not None else ([correct] if verdict else [])
    summary = {"llm_calls": 1, "prompt_tokens": 100, "completion_tokens": 50, "seconds": seconds, "stopped_by": "solved",
               "candidates": [{"verdict": "correct" if c else "wrong-values", "correct": c} for c in candidates]}
    attempt = rows.start_attempt(db, "r1", task, generator, "whole-file", device, {})
    if status == "failed":
        rows.fail_attempt(db, attempt, "RuntimeError: boom", {"seconds": 1.0})
    else:
        rows.finish_attempt(db, attempt, status, best, summary)
    return attempt


@pytest.fixture
def db(tmp_path):
    """Two generators x four tasks x two devices (host real, emulator), with noise floors for A and C on the host."""
    db = store.open_db(tmp_path / "r.sqlite")
    config = {"run": {"generators": ["one-shot", "pass@k"], "modes": ["whole-file"]}, "tasks": TASKS}
    devices = (("host", HOST, False), ("127.0.0.1:5599", EMU, True))
    rows.create_run(db, {"id": "r1", "status": "finished", "mkbench_version": "0.1.0", "config": config, "config_key": "k",
                         "provenance": {"mkbench_version": "0.1.0", "model": {"model": "m", "backend": "replay"}}},
                    [(serial, serial, key) for serial, key, _ in devices])
    for serial, key, emulated in devices:
        rows.store_device(db, key, serial, emulated, "x86_64", {})
    rows.record_noise_floor(db, HOST, "A", 0.95, 1.05)
    rows.record_noise_floor(db, HOST, "C", 0.90, 1.20)  # B and D get the widest band: 0.90-1.20
    # one-shot on the host: A parity, B a win, C does not compile, D wrong
    _attempt(db, "A", "one-shot", HOST, "correct", 1.04, seconds=20.0)
    _attempt(db, "B", "one-shot", HOST, "correct", 1.6)
    _attempt(db, "C", "one-shot", HOST, "compile-error")
    _attempt(db, "D", "one-shot", HOST, "wrong-values")
    # one-shot on the emulator: A correct (not timed), B compile error, C never attempted, D a harness failure
    _attempt(db, "A", "one-shot", EMU, "correct")
    _attempt(db, "B", "one-shot", EMU, "compile-error")
    _attempt(db, "D", "one-shot", EMU, status="failed")
    # pass@k on the host: A 2 of 4 correct at 2.0x, B 0 of 4, C 1 of 4 at 0.8x, D never; on the emulator A 1 of 2
    _attempt(db, "A", "pass@k", HOST, "correct", 2.0, candidates=[True, True, False, False])
    _attempt(db, "B", "pass@k", HOST, "wrong-values", candidates=[False] * 4)
    _attempt(db, "C", "pass@k", HOST, "correct", 0.8, candidates=[True, False, False, False])
    _attempt(db, "A", "pass@k", EMU, "correct", candidates=[True, False])
    return db


def by_group(metrics, *group):
    return next(m for m in metrics if m.group == group)


def test_metrics_by_generator_with_exact_numbers(db):
    r = report.build_report(db, "r1")
    one = by_group(r.by_generator, "one-shot")
    assert (one.items, one.compiled, one.correct, one.timed_items) == (8, 4, 3, 4)
    assert (one.csr, one.fcr) == (0.5, 0.375)
    assert one.fast == {0.5: 0.5, 1.0: 0.25, 1.5: 0.25}  # A's 1.04x is parity: not faster than 1.0
    assert (one.wins, one.parity) == (1, 1)
    assert one.geomean == pytest.approx(math.sqrt(1.0 * 1.6))
    assert (one.pass_1, one.pass_k, one.k) == (0.375, 0.375, 1)
    assert one.tokens_per_task == 150 and one.calls_per_task == 1
    assert one.seconds_per_task == pytest.approx(70 / 6)  # six finished attempts: 20 + 5 x 10
    k = by_group(r.by_generator, "pass@k")
    assert (k.items, k.compiled, k.correct, k.csr, k.fcr) == (8, 4, 3, 0.5, 0.375)
    assert k.fast == {0.5: 0.5, 1.0: 0.25, 1.5: 0.25}
    assert (k.wins, k.parity) == (1, 0)  # 0.8x is outside C's floor: a loss, counted as measured
    assert k.geomean == pytest.approx(math.sqrt(2.0 * 0.8))
    assert k.k == 4 and k.pass_1 == pytest.approx((0.5 + 0 + 0.25 + 0.5) / 8)
    assert k.pass_k == pytest.approx(3 / 8)  # A, C (n = k, c > 0) and the emulator's A (n = 2 < k: pass@2)


def test_metrics_by_device_and_category(db):
    r = report.build_report(db, "r1")
    host = by_group(r.by_device, "one-shot", "host")
    assert (host.items, host.csr, host.fcr, host.fast[1.0]) == (4, 0.75, 0.5, 0.25)
    emu = by_group(r.by_device, "one-shot", "127.0.0.1:5599")
    assert (emu.items, emu.csr, emu.fcr) == (4, 0.25, 0.25)
    assert emu.fast == {0.5: None, 1.0: None, 1.5: None} and emu.geomean is None  # emulated: no timings
    unary = by_group(r.by_category, "one-shot", "Unary")
    assert (unary.items, unary.csr, unary.fcr, unary.fast[1.0], unary.fast[1.5]) == (4, 0.75, 0.75, 0.5, 0.5)
    binary = by_group(r.by_category, "pass@k", "Binary")
    assert (binary.items, binary.fcr, binary.fast[0.5], binary.fast[1.0]) == (4, 0.25, 0.5, 0.0)
    assert any("emulated" in n for n in r.notes) and any("1 items not attempted" in n or "not attempted" in n for n in r.notes)


def test_noise_floors_and_parity(db):
    assert report.noise_floor(db, HOST, "A") == (0.95, 1.05)
    assert report.noise_floor(db, HOST, "B") == (0.90, 1.20)  # the widest of the device's task floors
    assert report.noise_floor(db, EMU, "A") is None
    rows.record_noise_floor(db, HOST, "*", 0.97, 1.03)  # a stored overall floor wins over the derived one
    assert report.noise_floor(db, HOST, "B") == (0.97, 1.03)
    rows.record_noise_floor(db, HOST, "A", 0.99, 1.01)  # the newest floor of a task wins
    r = report.build_report(db, "r1")
    one = by_group(r.by_generator, "one-shot")
    assert one.fast[1.0] == 0.5 and one.parity == 0  # A's 1.04x is now outside 0.99-1.01: a win
    with pytest.raises(ValueError):
        rows.record_noise_floor(db, HOST, "A", 1.1, 0.9)


def test_no_floor_means_speedups_as_measured(tmp_path, db):
    db.conn.execute("DELETE FROM noise_floors")
    r = report.build_report(db, "r1")
    assert by_group(r.by_generator, "one-shot").fast[1.0] == 0.5
    assert any("no noise floor" in n for n in r.notes)


def test_pass_at_k_estimator():
    assert report.pass_at_k(10, 3, 2) == pytest.approx(1 - 21 / 45)
    assert report.pass_at_k(10, 0, 5) == 0.0
    assert report.pass_at_k(4, 1, 4) == 1.0
    assert report.pass_at_k(2, 1, 4) == 1.0 and report.pass_at_k(2, 0, 4) == 0.0
    assert report.pass_at_k(5, 2, 1) == pytest.approx(0.4)


def test_table_markdown_and_plots(db, tmp_path):
    r = report.build_report(db, "r1")
    table = report.format_table(r)
    assert "By generator" in table and "By device" in table and "By category" in table
    header = next(line for line in table.splitlines() if line.startswith("generator  "))
    assert "CSR" in header and "fast_1.5" in header and "pass@k" in header and "geomean" in header
    one_shot = next(line for line in table.splitlines() if line.startswith("one-shot "))
    assert "50.0" in one_shot and "37.5" in one_shot and "1.26x" in one_shot
    pytest.importorskip("matplotlib")
    r2, markdown, plots, message = report.write_report(db, "r1", tmp_path / "out", tmp_path)
    assert message == "" and [p.name for p in plots] == ["speedups.png", "categories.png"]
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in plots)
    text = markdown.read_text()
    assert "| one-shot | 8 | 50.0 | 37.5 |" in text and "![speedups](speedups.png)" in text


def test_plots_are_skipped_with_one_line_without_matplotlib(db, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    _, markdown, plots, message = report.write_report(db, "r1", tmp_path / "out", tmp_path)
    assert plots == [] and message.startswith("plots skipped: matplotlib is not installed") and "\n" not in message
    assert markdown.is_file()


def test_csv_export_columns_and_rows(db, tmp_path):
    first = db.conn.execute("SELECT id FROM attempts ORDER BY id LIMIT 1").fetchone()[0]
    for role in ("coder", "debugger"):
        rows.record_llm_call(db, {"attempt_id": first, "role": role, "backend": "replay", "model": "m",
                                  "prompt": [{"role": "user", "content": "write A"}], "completion": "```cpp\n```",
                                  "prompt_tokens": 3, "completion_tokens": 2, "wall_seconds": 0.5})
    attempts_path, calls_path, _ = report.export_csv(db, "r1", tmp_path, tmp_path)
    with attempts_path.open() as handle:
        exported = list(csv.DictReader(handle))
    assert tuple(exported[0]) == report.ATTEMPT_COLUMNS
    assert len(exported) == 11  # every attempt, the failed one too
    a = exported[0]
    assert (a["task"], a["category"], a["generator"], a["device_serial"], a["verdict"], a["speedup"]) == \
        ("A", "Unary", "one-shot", "host", "correct", "1.04")
    assert (a["noise_floor_low"], a["noise_floor_high"], a["parity"], a["effective_speedup"]) == ("0.95", "1.05", "1", "1.0")
    failed = next(r for r in exported if r["status"] == "failed")
    assert failed["error"] == "RuntimeError: boom" and failed["verdict"] == ""
    with calls_path.open() as handle:
        calls = list(csv.DictReader(handle))
    assert tuple(calls[0]) == report.LLM_CALL_COLUMNS
    assert [c["role"] for c in calls] == ["coder", "debugger"] and calls[0]["prompt_chars"] == "7"
    full_attempts, full_calls, _ = report.export_csv(db, "r1", tmp_path / "full", tmp_path, full=True)
    with full_calls.open() as handle:
        assert json.loads(next(csv.DictReader(handle))["prompt"])[0]["content"] == "write A"
    with full_attempts.open() as handle:
        assert next(csv.DictReader(handle))["candidate"] == "// kernel"


def test_the_report_rebuilt_from_an_export_alone_is_the_databases(db, tmp_path):
    """A published folder (the export without its large text fields) gives the same tables as the
    database: every metric of every group, the planned items never attempted included."""
    report.export_csv(db, "r1", tmp_path / "published", tmp_path)
    db.conn.close()  # the folder alone from here on
    rebuilt = report.report_from_export(tmp_path / "published")
    original = report.build_report(store.open_db(tmp_path / "r.sqlite"), "r1")
    for table in ("by_generator", "by_category", "by_device"):
        assert getattr(rebuilt, table) == getattr(original, table), table
    assert report.tables(rebuilt) == report.tables(original)
    assert "rebuilt from the export in" in rebuilt.notes[0]
    assert any("not attempted" in note for note in rebuilt.notes)

    from click.testing import CliRunner
    from mkbench.cli import main

    shown = CliRunner().invoke(main, ["report", "--from", str(tmp_path / "published"), "--no-plots", "--markdown",
                                      "--out", str(tmp_path / "md")])
    assert shown.exit_code == 0, shown.output
    assert "| one-shot |" in shown.output and (tmp_path / "md" / "report.md").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LookupError, match="holds 0 exported runs"):
        report.report_from_export(empty)


def test_the_newest_run_by_default_and_unknown_runs(db):
    assert report.latest_run(db) == "r1"
    assert report.build_report(db).run_id == "r1"
    with pytest.raises(LookupError, match="no run 'r2'"):
        report.build_report(db, "r2")
