"""The Performance Parser on a real store: times per side from the measurements, settings from the row."""

from __future__ import annotations

from mkbench import store
from mkbench.agents.tools import perf_parser
from mkbench.judge.verdict import Verdict
from mkbench.store import rows


def test_a_judged_kernel_becomes_a_few_indicators(tmp_path):
    db = store.open_db(tmp_path / "r.sqlite")
    evaluation = rows.record_evaluation(db, {
        "task": "Abs", "task_sha256": "t", "kind": "cpu-execution", "device_id": "dev", "candidate_sha256": "c",
        "candidate": "//", "verdict": "correct", "reason": "", "timing_reportable": 1,
        "judge_settings": {"threads": 4, "precision": "high", "hints": {}}, "stage_seconds": {}, "flags": []},
        [{"side": side, "round": r, "input_shapes": {}, "iterations": 3, "median_ms": 1.0, "times_ms": times}
         for side, r, times in (("native", 0, [2.0, 2.2, 1.8]), ("candidate", 0, [1.0, 1.1]), ("candidate", 1, [0.9]))])
    verdict = Verdict("correct", "", "Abs", "host", True, True, native_median_ms=2.0, candidate_median_ms=1.0, speedup=2.0,
                      speedup_low=1.8, speedup_high=2.2, timing_reportable=True, evaluation_id=evaluation,
                      served=({"op_type": "UnaryOp", "sub_type": "ABS", "served": "candidate", "execution_class": "MkAbs"},),
                      flags=("unstable timing",))
    profile = perf_parser.parse(verdict, db)
    assert profile["threads"] == 4 and profile["served"] == ["UnaryOp:ABS by candidate (MkAbs)"]
    assert profile["candidate_spread"] == {"median_ms": 1.0, "min_ms": 0.9, "max_ms": 1.1, "iterations": 3}
    text = perf_parser.render(profile)
    assert "speedup: 2x (per pair 1.8-2.2)" in text and "flags: unstable timing" in text
    assert "native median: 2 ms (min 1.8 ms, max 2.2 ms over 3 iterations)" in text


def test_an_emulated_kernel_gets_a_ratio_for_guidance_only():
    verdict = Verdict("correct", "", "Abs", "qemu-arm64", True, True, native_median_ms=3.0, candidate_median_ms=1.5)
    profile = perf_parser.parse(verdict)
    assert profile["speedup"] is None and profile["ratio_unreportable"] == 2.0
    assert "not a speedup" in perf_parser.render(profile)
