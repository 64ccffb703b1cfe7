"""The in-process backend with the real 0.5B model (installed once into the test model cache).

Generations are kept short (a few dozen tokens) so the module runs in about a minute on
two cores.
"""

from __future__ import annotations

import json

import pytest

from mkbench import store
from mkbench.llm import Chat, ContextOverflow, Message, Recorder, open_backend
from test_models import TEST_MODELS, settings_for, small_model  # noqa: F401  (a session fixture)

llama_cpp = pytest.importorskip(
    "llama_cpp", reason='llama-cpp-python is not installed: CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir llama-cpp-python'
)
from mkbench.llm.llamacpp import LlamaCppBackend  # noqa: E402

pytestmark = pytest.mark.slow
N_CTX = 1024
N_BATCH = 64  # small batches, so short prompts already share whole batches of KV cache


@pytest.fixture(scope="module")
def backend(small_model):  # noqa: F811
    with LlamaCppBackend(small_model, n_ctx=N_CTX, n_batch=N_BATCH) as loaded:
        yield loaded


@pytest.fixture
def chat(backend, tmp_path):
    return Chat(backend, Recorder(store.open_db(tmp_path / "db.sqlite")))


def test_greedy_answers_repeat_and_are_recorded(chat, backend, small_model):  # noqa: F811
    question = [Message("user", "What is 2 + 3? Answer with the number only.")]
    first = chat(question, temperature=0, max_tokens=8)
    assert "5" in first.text and first.finish_reason == "stop"
    assert first.prompt_tokens == backend.count_prompt_tokens(question)
    assert chat(question, temperature=0, max_tokens=8).text == first.text
    row = chat.recorder.db.execute(
        "SELECT model, model_sha256, prompt_tokens, completion_tokens, tokens_per_second FROM llm_calls"
    ).fetchone()
    assert row[:4] == (small_model.name, small_model.sha256, first.prompt_tokens, first.completion_tokens)
    assert row[4] > 0


def test_seed_and_temperature_are_per_call(chat):
    question = [Message("user", "Name a random animal.")]
    runs = [chat(question, seed=seed, temperature=1.5, max_tokens=6).text for seed in (1, 1, 2, 3)]
    assert runs[0] == runs[1]
    assert len(set(runs[1:])) > 1


def test_a_shared_prefix_reuses_the_kv_cache_without_changing_answers(chat):
    context = [Message("system", "You review C++ kernels for the MNN inference engine. " * 8)]
    first = context + [Message("user", "Name one SIMD instruction set.")]
    follow_up = first + [Message("assistant", "NEON."), Message("user", "Name another one.")]
    chat(first, seed=4, temperature=1.0, max_tokens=4)
    reused = chat(follow_up, seed=4, temperature=1.0, max_tokens=4)
    assert reused.prompt_tokens > N_BATCH and reused.evaluated_prompt_tokens <= reused.prompt_tokens - N_BATCH
    chat([Message("user", "Something else entirely.")], max_tokens=1)  # leaves nothing reusable
    fresh = chat(follow_up, seed=4, temperature=1.0, max_tokens=4)
    assert fresh.evaluated_prompt_tokens == fresh.prompt_tokens
    assert fresh.text == reused.text  # same prompt and seed, same answer, whatever the cache held


def test_max_tokens_and_stop_strings(chat):
    counting = [Message("user", "Count from 1 to 20, separated by commas.")]
    cut = chat(counting, temperature=0, max_tokens=4)
    assert (cut.finish_reason, cut.completion_tokens) == ("length", 4)
    stopped = chat(counting, temperature=0, max_tokens=40, stop=["4"])
    assert stopped.finish_reason == "stop" and "4" not in stopped.text and "3" in stopped.text


def test_the_context_guard_fails_or_trims_never_cuts_the_task(chat, backend):
    task = [Message("system", "You are terse."), Message("user", "Reply with exactly: OK")]
    filler = "The kernel failed to compile because of a missing header. " * 12
    history = [
        Message("assistant", filler),
        Message("user", filler),
        Message("assistant", "Fixed."),
        Message("user", "Reply with exactly: OK"),
    ]
    long_prompt = backend.count_prompt_tokens(task + history)
    max_tokens = N_CTX - long_prompt + 50  # does not fit with the history, fits without its two oldest turns
    with pytest.raises(
        ContextOverflow, match=f"prompt is {long_prompt} tokens and the answer may take {max_tokens}, more than the {N_CTX}-token context"
    ):
        chat(task + history, max_tokens=max_tokens)
    trimming = Chat(backend, chat.recorder, on_overflow="trim")
    answer = trimming(task + history, temperature=0, max_tokens=max_tokens, stop=["\n"])
    assert answer.trimmed_messages == 2 and answer.messages == tuple(task + history[2:])
    assert answer.text.strip() and answer.finish_reason == "stop"
    too_long = N_CTX - backend.count_prompt_tokens([Message("user", filler), Message("user", "c")]) + 1
    with pytest.raises(ContextOverflow, match="even with every old turn dropped"):
        trimming([Message("user", filler), Message("assistant", "a"), Message("user", "b"), Message("user", "c")], max_tokens=too_long)


def test_a_json_schema_constrains_the_answer(chat):
    schema = {"type": "object", "properties": {"compiles": {"type": "boolean"}}, "required": ["compiles"]}
    answer = chat([Message("user", "Does `int main() { return 0; }` compile? Answer in JSON.")], temperature=0, max_tokens=20, json_schema=schema)
    assert isinstance(json.loads(answer.text)["compiles"], bool)


def test_names_after_a_prefix_are_kept_to_the_known_ones(chat):
    """Monitor-guided decoding: asked to invent an op type, the model can only write names from the
    set after `OpType_`; without the set it writes what it likes."""
    from mkbench.llm.identifiers import Identifiers

    known = {"UnaryOp", "BinaryOp", "Reduction", "Softmax", "Pooling"}
    question = [Message("user", "Complete the C++ line `auto type = OpType_` with an op type for a 2D max pooling "
                                "layer called MaxPool2D; answer with the line only, in a ```cpp block.")]
    guarded = chat(question, temperature=0, max_tokens=40, identifiers=Identifiers({"OpType_": known}))
    written = [part.split(";")[0].split(")")[0].split()[0].strip() for part in guarded.text.split("OpType_")[1:]]
    assert written and all(name in known for name in written), guarded.text
    free = chat(question, temperature=0, max_tokens=40)
    assert any(part.split(";")[0].strip() not in known for part in free.text.split("OpType_")[1:]), free.text


def test_members_of_a_declared_type_are_kept_to_the_known_ones(chat):
    """Member access: asked for a member the type lacks, the model can only write one it has."""
    from mkbench.llm.identifiers import Identifiers

    members = Identifiers({}, {"Variable": {"getInfo", "readMap"}, "VARP": {"fix", "get"}}, {"VARP": "Variable"})
    question = [Message("user", "Write the C++ function `int rank(VARP x)` whose body is `return x->ndim();` "
                                "Answer with the function only, in a ```cpp block.")]
    guarded = chat(question, temperature=0, max_tokens=60, identifiers=members)
    written = [part.split("(")[0].strip() for part in guarded.text.split("x->")[1:]]
    assert written and all(name in {"getInfo", "readMap"} for name in written), guarded.text
    free = chat(question, temperature=0, max_tokens=60)
    assert "x->ndim" in free.text, free.text


def test_a_one_shot_kernel_request_gives_cpp_and_a_recorded_call(chat):
    answer = chat(
        [
            Message("system", "You are an expert C++ programmer. Answer with one ```cpp code block and nothing else."),
            Message("user", "Write a C++ function `void relu(const float* x, float* y, int n)` that computes y = max(x, 0)."),
        ],
        temperature=0,
        max_tokens=100,
    )
    assert answer.code is not None and "relu" in answer.code
    assert chat.recorder.db.execute("SELECT completion FROM llm_calls WHERE id = ?", [answer.call_id]).fetchone()[0] == answer.text


def test_configuration_loads_an_installed_model_by_name(tmp_path, small_model):  # noqa: F811
    settings = settings_for(tmp_path, TEST_MODELS)
    with open_backend(f"llama.cpp:{small_model.name}?n_ctx=256", settings) as loaded:
        assert (loaded.name, loaded.model, loaded.context_length) == ("llama.cpp", small_model.name, 256)
        assert loaded.model_sha256 == small_model.sha256


def test_samples_of_one_prompt_decoded_together(backend):
    """llm/batched.py: n samples share the prompt's evaluation and one decode step each; the same
    seeds give the same samples, greedy samples agree, stop strings cut, the context is guarded."""
    from mkbench.llm.batched import BatchDecoder

    prompt = backend.prompt_tokens([Message("user", "Name three animals, comma separated.")])
    with BatchDecoder(backend.llama, sequences=3, n_ctx=512) as decoder:
        first = decoder.generate(prompt, seeds=[1, 2, 3], temperature=1.2, sampling=backend.sampling, max_tokens=12)
        again = decoder.generate(prompt, seeds=[1, 2, 3], temperature=1.2, sampling=backend.sampling, max_tokens=12)
        assert [s.text for s in first] == [s.text for s in again] and len({s.text for s in first}) > 1
        assert all(0 < s.completion_tokens <= 12 and s.finish_reason in ("stop", "length") for s in first)
        greedy = decoder.generate(prompt, seeds=[7, 8], temperature=0, sampling=backend.sampling, max_tokens=12)
        assert greedy[0].text == greedy[1].text and greedy[0].text
        cut = decoder.generate(prompt, seeds=[7], temperature=0, sampling=backend.sampling, max_tokens=12, stop=[","])
        assert cut[0].text == greedy[0].text.split(",")[0] and cut[0].finish_reason == "stop"
        with pytest.raises(ValueError, match="exceed the context"):
            decoder.generate(prompt, seeds=[1, 2, 3], temperature=1.0, sampling=backend.sampling, max_tokens=400)


def test_chat_samples_are_decoded_together_and_recorded_one_by_one(chat):
    from mkbench.llm.identifiers import Identifiers

    question = [Message("user", "Complete the C++ line `auto type = OpType_` with an op type for max pooling; "
                                "answer with the line only.")]
    known = {"UnaryOp", "Pooling"}
    answers = chat.samples(question, seeds=[1, 2, 3], temperatures=[1.0, 1.0, None], max_tokens=16,
                           identifiers=Identifiers({"OpType_": known}))
    assert [a.seed for a in answers] == [1, 2, 3] and answers[2].temperature == chat.backend.sampling.temperature
    assert answers[0].evaluated_prompt_tokens == answers[0].prompt_tokens and answers[1].evaluated_prompt_tokens == 0
    for answer in answers:  # the name constraint holds in the batch too
        for part in answer.text.split("OpType_")[1:]:
            assert part.split(";")[0].split("`")[0].strip() in known, answer.text
    rows = chat.recorder.db.execute("SELECT seed FROM llm_calls ORDER BY id").fetchall()
    assert [r[0] for r in rows][-3:] == [1, 2, 3]
