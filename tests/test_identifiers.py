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


MEMBER_VOCAB = ["->", "->host", "->dim", ".", ".size", ".get", "host", "elementSize", "element", "Size", "dim", "get", "Info",
                "()", "<float>()", " ", ";", ".\n", "\n", "x", " input", "axis"]
MEMBERS = Identifiers({}, {"Tensor": {"host", "elementSize"}, "Variable": {"getInfo", "readMap"}, "VARP": {"get", "fix"},
                          "ArgMax": {"axis", "outMaxVal"}}, {"VARP": "Variable"})
MEMBER_TOKENS = TokenTable.of(MEMBER_VOCAB)


def members_after(text: str) -> set[str]:
    pieces = iter([text])
    guard = MEMBERS.processor(MEMBER_TOKENS, 2, lambda ids: next(pieces))
    scores = guard(np.array([0, 0, 1]), np.zeros(len(MEMBER_VOCAB)))
    return {MEMBER_VOCAB[i] for i in np.flatnonzero(np.isfinite(scores))}


def test_member_access_on_a_declared_mnn_type_names_only_its_members():
    head = "ErrorCode onExecute(const std::vector<Tensor *> &inputs, const std::vector<Tensor *> &outputs) {\n"
    assert members_after(head + "    auto n = inputs[0]->") == {"host", "element", "elementSize"}
    assert members_after(head + "    auto n = inputs[0]->element") == {"Size"}
    assert members_after(head + "    auto t = inputs[0];\n    t->elementSize") >= {"()", ";"}  # complete: it may end
    crossing = members_after(head + "    Tensor* out = outputs[0];\n    auto p = out")
    assert "->host" in crossing and "->dim" not in crossing and ".size" not in crossing  # the token that opens the access
    varp = "VARP mk_composite_softplus(VARP x) {\n    auto n = x"
    assert "->dim" not in members_after(varp)
    assert members_after(varp + "->get") == {"Info"}  # "->" on a VARP reaches its Variable: getInfo
    assert members_after(varp + ".get") >= {"()", ";"}  # "." stays on the VARP: get is complete
    accessor = "auto k = op->main_as_ArgMax()->"
    assert members_after(accessor) == {"axis"}  # an accessor's call has its table's type
    assert "->dim" not in members_after("auto k = op->main_as_ArgMax()")


def test_member_access_is_left_free_where_the_type_is_not_known():
    everything = set(MEMBER_VOCAB)
    assert members_after("int n = foo()->") == everything  # an expression, not a declared variable
    assert members_after("Tensor* t;\nauto n = a.t->") == everything  # a member of something else
    assert members_after("Tensor* t;\n// copy the tensor t.") == everything  # prose in a comment
    assert members_after('Tensor* t;\nprintf("t.') == everything  # a string literal
    assert members_after("float x;\nauto n = x.") == everything  # not an MNN type
