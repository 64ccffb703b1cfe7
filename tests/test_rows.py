"""The store's writers: each kind of row written by one named function; an attempt's status only
moves running -> finished | failed; non-finite floats and nested values survive as JSON."""

from __future__ import annotations

import json

import pytest

from mkbench import store
from mkbench.store import rows


@pytest.fixture
def db(tmp_path):
    return store.open_db(tmp_path / "r.sqlite")


def _attempt(db, **summary) -> int:
    rows.store_device(db, "dev", "host", False, "x86_64", {"cores": 2})
    return rows.start_attempt(db, "r1", "Abs", "one-shot", "whole-file", "dev", {"budget": {"calls": 1}, **summary})


def test_an_attempt_moves_from_running_to_finished_once(db):
    attempt = _attempt(db)
    assert db["attempts"].get(attempt)["status"] == "running"
    rows.finish_attempt(db, attempt, "finished", None, {"stopped_by": "solved", "max_abs_error": float("inf")})
    row = db["attempts"].get(attempt)
    summary = json.loads(row["summary"])
    assert row["status"] == "finished"
    assert summary == {"budget": {"calls": 1}, "stopped_by": "solved", "max_abs_error": "inf"}  # merged, inf as text
    with pytest.raises(ValueError, match="already ended"):
        rows.finish_attempt(db, attempt, "finished", None, {})
    rows.fail_attempt(db, attempt, "RuntimeError: late", {})  # an ended attempt keeps its status
    assert db["attempts"].get(attempt)["status"] == "finished"
    assert db["attempts"].count == 1


def test_a_fault_fails_the_same_row_and_a_retry_is_a_new_attempt(db):
    first = _attempt(db)
    rows.fail_attempt(db, first, "RuntimeError: the MNN tree is missing", {"seconds": 1.5})
    retry = _attempt(db)
    rows.finish_attempt(db, retry, "finished", None, {"stopped_by": "samples"})
    statuses = [(r["id"], r["status"], json.loads(r["summary"]).get("error")) for r in db["attempts"].rows]
    assert statuses == [(first, "failed", "RuntimeError: the MNN tree is missing"), (retry, "finished", None)]
    with pytest.raises(ValueError, match="finished or failed"):
        rows.finish_attempt(db, _attempt(db), "running", None, {})


def test_an_evaluation_and_its_measurements_are_written_together(db):
    row = {"run_id": "r1", "task": "Abs", "task_sha256": "t", "kind": "cpu-execution", "device_id": "dev",
           "candidate_sha256": "c", "candidate": "//", "verdict": "correct", "reason": "", "timing_reportable": 1,
           "served_by": [{"op_type": "UnaryOp"}], "judge_settings": {"threads": 1}, "stage_seconds": {}, "flags": []}
    good = {"side": "native", "round": 0, "input_shapes": {"x": [2]}, "iterations": 5, "median_ms": 1.0, "times_ms": [1.0]}
    with pytest.raises(Exception):
        rows.record_evaluation(db, row, [good, {"side": "candidate"}])  # the second measurement lacks its columns
    assert db["evaluations"].count == 0 and db["measurements"].count == 0
    evaluation = rows.record_evaluation(db, row, [good])
    assert json.loads(db["evaluations"].get(evaluation)["served_by"]) == [{"op_type": "UnaryOp"}]
    assert [m["evaluation_id"] for m in db["measurements"].rows] == [evaluation]


def test_calls_made_before_the_attempt_are_bound_to_it_once(db):
    call = {"backend": "replay", "model": "m", "prompt": [{"role": "user", "content": "hi"}], "completion": "x",
            "wall_seconds": 0.1}
    loose = rows.record_llm_call(db, call)
    owned = rows.record_llm_call(db, {**call, "attempt_id": 7})
    rows.bind_calls(db, 9, [loose, owned])
    assert {r["id"]: r["attempt_id"] for r in db["llm_calls"].rows} == {loose: 9, owned: 7}


def test_a_run_and_its_devices_move_together(db):
    rows.create_run(db, {"id": "r1", "status": "running", "mkbench_version": "0", "config": {"run": {}}, "config_key": "k"},
                    [("host", "host", "dev"), ("127.0.0.1:5599", "127.0.0.1:5599", None)])
    rows.mark_run_device(db, "r1", "127.0.0.1:5599", "lost", "unplugged", "dev2")
    rows.set_run_status(db, "r1", "finished")
    assert rows.run_row(db, "r1")["status"] == "finished" and rows.latest_run_with_key(db, "k") == "r1"
    assert [(d["serial"], d["status"], d["device_id"]) for d in rows.run_devices(db, "r1")] == \
        [("host", "active", "dev"), ("127.0.0.1:5599", "lost", "dev2")]
    assert rows.json_dict(rows.run_row(db, "r1")["config"]) == {"run": {}}


def test_a_noise_floor_needs_an_ordered_band(db):
    with pytest.raises(ValueError, match="low <= high"):
        rows.record_noise_floor(db, "dev", "Abs", 1.1, 0.9)
    assert db["noise_floors"].count == 0
