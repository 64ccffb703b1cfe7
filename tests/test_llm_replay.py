"""The replay backend: answers looked up by prompt hash (and seed), from files or a database."""

from __future__ import annotations

import hashlib
import json

import pytest

from mkbench import store
from mkbench.llm import Chat, LLMError, Message, Recorder, open_backend
from mkbench.llm.replay import ReplayBackend, ReplayEntry, ReplayMiss, prompt_hash, write_replay

TASK = [Message("user", "Write the Sigmoid kernel.")]


def test_the_prompt_hash_is_the_sha256_of_canonical_json():
    expected = hashlib.sha256(b'[{"content":"Write the Sigmoid kernel.","role":"user"}]').hexdigest()
    assert prompt_hash(TASK) == expected
    assert prompt_hash([Message("user", "Write the Sigmoid kernel. ")]) != expected


def test_an_answer_for_the_seed_wins_over_one_for_any_seed(tmp_path):
    key = prompt_hash(TASK)
    backend = ReplayBackend([ReplayEntry(key, "any seed"), ReplayEntry(key, "seed 3", seed=3)])
    chat = Chat(backend, Recorder(store.open_db(tmp_path / "db.sqlite")))
    assert chat(TASK, seed=3).text == "seed 3"
    assert chat(TASK, seed=4).text == "any seed"
    with pytest.raises(ReplayMiss, match=f"no recorded answer for prompt {prompt_hash([Message('user', 'other')])}"):
        chat([Message("user", "other")])


def test_a_recording_written_from_calls_replays_them(tmp_path, settings):
    db = store.open_db(tmp_path / "db.sqlite")
    original = Chat(ReplayBackend([ReplayEntry(prompt_hash(TASK), "```cpp\nfloat s;\n```", seed=1)]), Recorder(db))
    first = original(TASK, seed=1)
    recording = tmp_path / "answers.jsonl"
    assert write_replay(recording, [first]) == 1

    line = json.loads(recording.read_text())
    assert line["messages"] == [m.to_dict() for m in TASK] and line["seed"] == 1

    replayed = Chat(open_backend(f"replay:{recording}", settings), Recorder(db))(TASK, seed=1)
    assert replayed.text == first.text and replayed.code == "float s;\n"
    with pytest.raises(ReplayMiss):
        Chat(ReplayBackend.from_file(recording), Recorder(db))(TASK, seed=2)  # recorded for seed 1 only


def test_a_database_of_recorded_calls_replays_them(tmp_path):
    db = store.open_db(tmp_path / "db.sqlite")
    backend = ReplayBackend([ReplayEntry(prompt_hash(TASK), "answer", seed=9)], model="m", model_sha256="ab" * 32)
    Chat(backend, Recorder(db)).bound(attempt_id=1, role="coder")(TASK, seed=9)
    again = ReplayBackend.from_db(db, attempt_id=1)
    assert (again.model, again.model_sha256) == ("m", "ab" * 32)
    assert Chat(again, Recorder(db))(TASK, seed=9).text == "answer"


def test_a_malformed_recording_names_its_line(tmp_path):
    recording = tmp_path / "bad.jsonl"
    recording.write_text('# answers\n\n{"prompt_hash": "00", "completion": "x"}\n{"completion": "no key"}\n')
    with pytest.raises(LLMError, match="bad.jsonl:4: not a replay entry"):
        ReplayBackend.from_file(recording)
