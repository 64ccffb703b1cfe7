"""Monitor-guided decoding's rule on a toy vocabulary: after a prefix, only tokens that keep the
name on course to a known one; a token that would finish the prefix and start an unknown name is
refused; elsewhere nothing changes. (The real model under it: test_llm_llamacpp.py.)"""

from __future__ import annotations

import numpy as np
from mkbench.llm.identifiers import Identifiers, TokenTable

VOCAB = ["Op", "Type", "_", "OpType", "_Max", "_Pool", "Pool", "ing", "Pooling", "Unary", "Op;", ";", " x", "2D", "ing;",
         "Max", "main", "_as", "_as_"]
NAMES = Identifiers({"OpType_": {"Pooling", "UnaryOp"}, "main_as_": {"Pool"}})
TOKENS = TokenTable.of(VOCAB)


def allowed_after(text: str) -> set[str]:
    """The vocabulary entries the processor leaves possible after `text` (everything: no constraint)."""
    prompt = [0, 0]
    pieces = iter([text])
    guard = NAMES.processor(TOKENS, len(prompt), lambda ids: next(pieces))
    scores = guard(np.array(prompt + [1]), np.zeros(len(VOCAB)))
    return {VOCAB[i] for i in np.flatnonzero(np.isfinite(scores))}


def test_inside_a_name_only_its_known_continuations():
    assert allowed_after("auto t = OpType_") == {"Pool", "Pooling", "Unary"}
    assert allowed_after("auto t = OpType_Pool") == {"ing", "ing;"}
    assert allowed_after("auto t = OpType_Pooling") >= {";", " x"}  # complete: it may end
    assert "ing" not in allowed_after("auto t = OpType_Pooling")


def test_a_token_that_finishes_the_prefix_cannot_start_an_unknown_name():
    after = allowed_after("auto t = OpType")
    assert "_Pool" in after and "_" in after and "_Max" not in after
    assert "_as_" in allowed_after("x->main")  # it finishes the prefix; the name comes next
    assert allowed_after("x->main_as_") == {"Pool"}
    assert "Max" in allowed_after("auto t = My")  # no prefix in sight: nothing changes
    assert allowed_after("auto t = MyOpType_") == set(VOCAB)  # "MyOpType_" is another identifier


def test_an_unknown_start_leaves_decoding_alone():
    assert allowed_after("auto t = OpType_Zz") == set(VOCAB)
