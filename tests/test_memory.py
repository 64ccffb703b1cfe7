"""The planners' memory: plans and their outcomes, methods never proposed twice, a short rendering."""

from __future__ import annotations

from mkbench.agents.tools.memory import Memory


def test_plans_settle_once_and_methods_are_compared_by_their_words():
    memory = Memory()
    assert memory.render() == "none yet"
    memory.add(1, "debugger", {"diagnosis": "the loop stops one short", "suggestions": [{"fix": "i <= n"}]})
    memory.settle("correct, 0.9x")
    memory.settle("overwritten?")  # an outcome is recorded once, for the latest plan
    memory.add(2, "accelerator", {"bottleneck": "scalar loop", "method": "SIMD vectorisation", "plan": "use NEON"})
    assert memory.entries[0].outcome == "correct, 0.9x" and memory.entries[1].outcome == ""
    assert memory.already_tried("simd  Vectorisation!") and not memory.already_tried("loop unrolling")
    assert not memory.already_tried("")
    text = memory.render()
    assert "round 1 (debugger): the loop stops one short -> correct, 0.9x" in text
    assert "round 2 (accelerator): bottleneck: scalar loop; method: SIMD vectorisation -> pending" in text
    assert memory.render("debugger").count("\n") == 0
    assert [e["round"] for e in memory.to_list()] == [1, 2]
