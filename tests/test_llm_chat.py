"""The chat interface: code-block extraction, recording into SQLite, binding calls to attempts.

Chat is driven here by the replay backend (deterministic); the context guard is tested against
a real tokenizer in test_llm_llamacpp.py and against a real HTTP refusal in test_llm_openai.py.
"""

from __future__ import annotations

import json

import pytest

from mkbench import store
from mkbench.llm import Chat, Message, Recorder, code_blocks, extract_code
from mkbench.llm.replay import ReplayBackend, ReplayEntry, prompt_hash

TASK = [Message("system", "You write MNN CPU kernels."), Message("user", "Write the ReLU kernel.")]
ANSWER = "Here it is:\n```cpp\nvoid relu(float* x, int n) { for (int i = 0; i < n; ++i) x[i] = x[i] > 0 ? x[i] : 0; }\n```\nDone."


@pytest.fixture
def db(tmp_path):
    return store.open_db(tmp_path / "mkbench.sqlite")


@pytest.fixture
def backend():
    return ReplayBackend([ReplayEntry(prompt_hash(TASK), ANSWER, prompt_tokens=30, completion_tokens=40)], model="recorded-coder")


# ---------------------------------------------------------------- code blocks


def test_extract_code_prefers_closed_cpp_blocks():
    text = "```python\nprint(1)\n```\n```cpp\nint a;\n```\ntext\n```c++\nint longer_one;\n```\n"
    assert extract_code(text) == "int longer_one;\n"
    assert extract_code("no code here") is None
    assert extract_code("```python\nprint(1)\n```") is None
    assert extract_code("```\nint untagged;\n```") == "int untagged;\n"
    assert extract_code("~~~cpp\nint tilde;\n~~~") == "int tilde;\n"
    # a closed block wins over a longer one the answer was cut off inside
    assert extract_code("```cpp\nint done;\n```\n```cpp\nint cut_off_in_the_middle_of_a_long(") == "int done;\n"


def test_code_blocks_keeps_inner_fences_and_marks_cut_blocks():
    text = "````markdown\n```cpp\nx\n```\n````\n  ```cpp\nint f() {\n"
    blocks = code_blocks(text)
    assert [(b.language, b.closed) for b in blocks] == [("markdown", True), ("cpp", False)]
    assert blocks[0].code == "```cpp\nx\n```\n"
    assert extract_code(text) == "int f() {\n"


def test_message_roles_are_checked():
    with pytest.raises(ValueError, match="role 'tool'"):
        Message("tool", "x")


# ---------------------------------------------------------------- recording


def test_a_call_returns_text_and_is_recorded(db, backend):
    chat = Chat(backend, Recorder(db))
    answer = chat(TASK, seed=5, max_tokens=300)
    assert answer.text == ANSWER and answer.code.startswith("void relu(")
    assert (answer.backend, answer.model, answer.seed, answer.temperature, answer.max_tokens) == ("replay", "recorded-coder", 5, 0.0, 300)
    row = db.execute("SELECT * FROM llm_calls WHERE id = ?", [answer.call_id]).fetchone()
    columns = [d[0] for d in db.execute("SELECT * FROM llm_calls").description]
    row = dict(zip(columns, row, strict=True))
    assert json.loads(row["prompt"]) == [m.to_dict() for m in TASK]
    assert row["completion"] == ANSWER and row["backend"] == "replay" and row["seed"] == 5
    assert (row["prompt_tokens"], row["completion_tokens"]) == (30, 40)
    assert row["wall_seconds"] >= 0 and row["attempt_id"] is None


def test_bound_chats_attach_calls_to_an_attempt_and_role(db, backend):
    chat = Chat(backend, Recorder(db))
    chat.bound(attempt_id=7, role="coder")(TASK, temperature=0.3)
    chat.bound(attempt_id=7, role="repairer")(TASK)
    rows = db.execute("SELECT attempt_id, role, temperature FROM llm_calls ORDER BY id").fetchall()
    assert rows == [(7, "coder", 0.3), (7, "repairer", 0.0)]


def test_bad_calls_are_refused_before_the_backend(db, backend):
    chat = Chat(backend, Recorder(db))
    with pytest.raises(ValueError, match="at least one message"):
        chat([])
    with pytest.raises(ValueError, match="max_tokens"):
        chat(TASK, max_tokens=0)
    with pytest.raises(ValueError, match="on_overflow"):
        Chat(backend, Recorder(db), on_overflow="truncate")
