"""An attempt read back from a real store and printed: header, calls, tools, lint, verdicts."""

from __future__ import annotations

import pytest

from mkbench import store
from mkbench.agents import trajectory
from mkbench.store import rows


def test_an_attempt_is_replayed_step_by_step(tmp_path):
    db = store.open_db(tmp_path / "r.sqlite")
    attempt = rows.start_attempt(db, "r1", "Abs", "moka", "scaffolded", "dev", {"model": "m", "backend": "replay"})
    long_prompt = "\n".join(f"line {i}" for i in range(100))
    call = rows.record_llm_call(db, {"attempt_id": attempt, "role": "coder", "backend": "replay", "model": "m",
                                     "prompt": [{"role": "user", "content": long_prompt}], "completion": "x", "wall_seconds": 1})
    rows.add_step(db, attempt, 0, "coder", {"call_id": call, "seed": 0, "temperature": 0.2, "answer": "```cpp\n```",
                                            "prompt_tokens": 90, "completion_tokens": 5, "seconds": 1.5})
    rows.add_step(db, attempt, 1, "lint", {"ok": False, "reason": "do not write #include"})
    rows.add_step(db, attempt, 2, "tool", {"tool": "tree", "args": {"query": "Tensor"}, "result": "class Tensor"})
    rows.add_step(db, attempt, 3, "judge", {"verdict": "compile-error", "reason": "compile error: x", "evaluation_id": 4,
                                            "compiler_output": "candidate.cpp:1: error: x", "seconds": 2.0})
    rows.finish_attempt(db, attempt, "finished", None, {"stopped_by": "rounds", "verdicts": ["compile-error"], "best": "compile-error",
                                                        "llm_calls": 1, "prompt_tokens": 90, "completion_tokens": 5, "seconds": 4})
    loaded = trajectory.load(db, attempt)
    assert [s["role"] for s in loaded["steps"]] == ["coder", "lint", "tool", "judge"] and call in loaded["calls"]
    text = trajectory.render(db, attempt)
    assert text.startswith(f"attempt {attempt}: moka (scaffolded) on task Abs, run r1 — finished, stopped by rounds")
    assert "[1] lint  rejected: do not write #include" in text and "[2] tool  tree" in text
    assert "[3] judge  compile-error — compile error: x" in text and "candidate.cpp:1: error: x" in text
    assert "70 earlier lines (--full shows them)" in text and "line 99" in text and "line 0\n" not in text
    assert "line 0\n" in trajectory.render(db, attempt, full=True)
    with pytest.raises(trajectory.AttemptNotFound):
        trajectory.load(db, attempt + 1)
