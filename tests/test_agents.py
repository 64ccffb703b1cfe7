"""The generators end to end: scripted LLM answers through the replay backend, the real judge
(real MNN builds and runs on this machine), and the recorded trajectory read back.

Every path of MoKA: a compile error repaired with a repository lookup (whole-file), a wrong answer
repaired (scaffolded), the Accelerator keeping the faster correct kernel and rejecting a faster
wrong one, lint rejections, budget exhaustion, ablations; one-shot and pass@k in both modes; an
attempt replayed call for call from the database; `mkbench show`.

The native MNN build comes from the shared build cache (MKBENCH_BUILDS, see conftest.py); once it
exists the slow tests take a few minutes on 2 cores.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mkbench import store
from mkbench.agents import Budget, make_generator
from mkbench.agents.attempt import run_attempt
from mkbench.devices import get_device
from mkbench.llm.chat import Chat, Generation, Recorder
from mkbench.llm.replay import ReplayBackend, ReplayMiss
from mkbench.tasks import get_task

FIXTURES = Path(__file__).parent / "fixtures" / "agents"


def role_of(prompt: str) -> str:
    """Which role a prompt asks (the templates say it in so many words)."""
    if "You are the Debugger" in prompt:
        return "debugger"
    if "You are the Accelerator" in prompt:
        return "accelerator"
    return "coder"


def load_script(name: str) -> dict[str, list[str]]:
    """A scripted run: per role, the answers in the order that role is asked."""
    script: dict[str, list[str]] = {}
    for line in (FIXTURES / "scripts" / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        row = json.loads(line)
        answer = row.get("completion") or f"```cpp\n{(FIXTURES / row['file']).read_text()}```"
        script.setdefault(row["role"], []).append(answer)
    return script


class ScriptedReplay(ReplayBackend):
    """The replay backend; a prompt with no recording is answered from a per-role script, in order.
    Every request is kept, so a test can read what each role was shown."""

    def __init__(self, script: dict[str, list[str]], entries=()):
        super().__init__(entries)
        self.script = {role: list(answers) for role, answers in script.items()}
        self.requests = []

    def generate(self, request):
        self.requests.append(request)
        try:
            return super().generate(request)
        except ReplayMiss:
            answers = self.script.get(role_of(request.messages[-1].content), [])
            if not answers:
                raise
            return Generation(answers.pop(0), "stop", 900, 120)

    def asked(self, role: str) -> list:
        return [r for r in self.requests if role_of(r.messages[-1].content) == role]


@pytest.fixture
def db(settings):
    return store.open_db(settings.db_path)


def never_judge(*args, **kwargs):
    raise AssertionError("this path must not reach the judge")


@pytest.fixture
def solve(mnn_settings):
    """solve(generator, mode, task, script, db, budget, judge=None, **options) -> (result, backend):
    one attempt, begun and ended as a run does it (agents.attempt.run_attempt), on the host. The
    generators read the MNN tree (its index, the task's prompt), so the test skips without it."""
    return _solver(mnn_settings)


@pytest.fixture
def solve_without_tree(settings):
    """`solve` for an attempt that never reaches the MNN tree (a sample the lint rejects)."""
    return _solver(settings)


def _solver(settings):
    def run(generator: str, mode: str, task, script, db, budget: Budget, judge=None, **options):
        backend = script if isinstance(script, ReplayBackend) else ScriptedReplay(load_script(script))
        chat = Chat(backend, Recorder(db))
        made = make_generator(generator, mode, worker="agents-test", settings=settings, judge=judge, **options)
        task = get_task(task) if isinstance(task, str) else task
        _, result, error = run_attempt(made, task, get_device("host", settings), chat, budget, db, "test-run")
        assert result is not None, error
        return result, backend

    return run


def steps(db, attempt_id: int) -> list[dict]:
    return [{"role": r, **json.loads(c)} for r, c in
            db.conn.execute("SELECT role, content FROM steps WHERE attempt_id = ? ORDER BY position", [attempt_id])]


# ---------------------------------------------------------------- no judge needed


def test_lint_rejection_and_budget_exhaustion(db, solve):
    """A rejected sample is a failed compile that never reaches the compiler; the Debugger sees the
    reason; the run stops cleanly when its calls are spent."""
    result, backend = solve("moka", "scaffolded", "Abs", "lint_budget.jsonl", db, Budget(calls=2, rounds=5),
                            judge=never_judge, best_of=1)
    assert [v.verdict for v in result.verdicts] == ["compile-error"]
    assert result.verdicts[0].reason.startswith("lint: do not write #include")
    assert result.stopped_by == "budget:calls" and result.llm_calls == 2
    debugger_prompt = backend.asked("debugger")[0].messages[-1].content
    assert "mkbench lint: do not write #include" in debugger_prompt
    assert "void mk_unary_abs(const float* x, float* y, size_t n);" in debugger_prompt  # only the functions, not the scaffold
    recorded = steps(db, result.attempt_id)
    assert recorded[0]["role"] == "unit-test" and recorded[0]["available"]  # what the unit test will run on
    assert [s["role"] for s in recorded][1:3] == ["coder", "lint"] and recorded[2]["ok"] is False
    assert db["evaluations"].count == 0
    row = db.conn.execute("SELECT generator, mode, status, summary FROM attempts WHERE id = ?", [result.attempt_id]).fetchone()
    assert row[:3] == ("moka", "scaffolded", "finished")
    assert json.loads(row[3])["stopped_by"] == "budget:calls"
    calls = db.conn.execute("SELECT role FROM llm_calls WHERE attempt_id = ? ORDER BY id", [result.attempt_id]).fetchall()
    assert [c[0] for c in calls] == ["coder", "debugger"]


def test_ablations_change_what_the_debugger_gets(db, solve):
    result, backend = solve("moka-no-tree-no-errors", "scaffolded", "Abs", "lint_budget.jsonl", db, Budget(calls=2),
                            judge=never_judge, best_of=1)
    assert result.generator == "moka-no-tree-no-errors"
    debugger = backend.asked("debugger")[0]
    assert "lookups" not in debugger.json_schema["properties"]  # no Tree Builder: nothing to look up
    assert "```\nmkbench lint: do not write #include" in debugger.messages[-1].content  # no Error Extractor: the raw log
    result, backend = solve("moka", "scaffolded", "Abs", "lint_budget.jsonl", db, Budget(calls=2), judge=never_judge, best_of=1)
    assert "lookups" in backend.asked("debugger")[0].json_schema["properties"]


def with_targets(name: str, *targets):
    """A task with other MNN targets for a CPU-execution kernel (as validation might find them)."""
    task = get_task(name)
    return replace(task, mnn=replace(task.mnn, kind="cpu-execution", targets=tuple(targets)))


def test_a_task_the_scaffold_cannot_frame(db, solve):
    task = with_targets("Abs", ("UnaryOp", "ABS"), ("Select", None))
    result, backend = solve("moka", "scaffolded", task, "lint_budget.jsonl", db, Budget(), judge=never_judge)
    assert result.stopped_by == "unsupported" and result.llm_calls == 0 and not backend.requests
    assert "several op types" in steps(db, result.attempt_id)[0]["error"]


def test_one_shot_lint_rejection_is_recorded(db, solve_without_tree):
    result, _ = solve_without_tree("one-shot", "scaffolded", "Abs", "lint_budget.jsonl", db, Budget(), judge=never_judge)
    assert result.best.verdict == "compile-error" and result.best.evaluation_id is None
    assert result.stopped_by == "samples"


# ---------------------------------------------------------------- with the real judge


@pytest.mark.slow
def test_compile_error_repaired_with_a_repository_lookup(db, solve):
    """Whole-file MoKA: a hallucinated Tensor method fails to build; the Error Extractor marks it
    cross-file with MNN's real members; the Debugger asks the tree for Tensor::elementSize; the
    Coder gets its declaration and the kernel builds and is correct. Then the attempt is replayed
    from the database, call for call."""
    result, backend = solve("moka", "whole-file", "Abs", "moka_whole_file_lookup.jsonl", db, Budget(rounds=1))
    assert [v.verdict for v in result.verdicts] == ["compile-error", "correct"], [v.reason for v in result.verdicts]
    recorded = steps(db, result.attempt_id)
    extractor = next(s for s in recorded if s.get("tool") == "error_extractor")
    cross = json.loads(extractor["result"])["crossfile_error"]
    assert any("elementCount" in e["message"] and "elementSize" in e["mnn_source"]["code"] for e in cross)
    lookup = next(s for s in recorded if s.get("tool") == "tree.lookup")
    assert lookup["args"] == {"query": "Tensor::elementSize"} and "inline int elementSize() const;" in lookup["result"]
    revise = backend.asked("coder")[1].messages[-1].content
    assert "MNN declarations you asked for" in revise and "inline int elementSize() const;" in revise
    assert "lookups" in backend.asked("debugger")[0].json_schema["properties"]
    best = db.conn.execute("SELECT best_evaluation_id FROM attempts WHERE id = ?", [result.attempt_id]).fetchone()[0]
    assert best == result.verdicts[1].evaluation_id is not None
    whole_file_prompt = backend.asked("coder")[0].messages[-1].content
    assert "#define REGISTER_CPU_OP_CREATOR" in whole_file_prompt and "ExampleSquaredDifference" in whole_file_prompt

    # The same attempt again, every answer from the database: the same trajectory.
    replayed, _ = solve("moka", "whole-file", "Abs", ReplayBackend.from_db(db, result.attempt_id), db, Budget(rounds=1))
    assert [v.verdict for v in replayed.verdicts] == ["compile-error", "correct"]
    assert [s["role"] for s in steps(db, replayed.attempt_id)] == [s["role"] for s in recorded]

    # `mkbench show` prints it readably.
    from click.testing import CliRunner
    from mkbench.cli import main

    shown = CliRunner().invoke(main, ["show", str(result.attempt_id)])
    assert shown.exit_code == 0, shown.output
    assert "moka (whole-file) on task Abs" in shown.output and "tree.lookup" in shown.output
    assert "compile-error" in shown.output and "correct" in shown.output
    assert "elementCount" in shown.output


@pytest.mark.slow
def test_wrong_answer_repaired(db, solve):
    """Scaffolded MoKA: functions that copy instead of taking |x| are wrong; the Debugger gets the
    Model Parser's mismatch and the Coder's repair is correct."""
    result, backend = solve("moka", "scaffolded", "Abs", "moka_scaffolded_wrong.jsonl", db, Budget(rounds=1), best_of=1)
    assert [v.verdict for v in result.verdicts] == ["wrong-values", "correct"]
    debugger = backend.asked("debugger")[0].messages[-1].content
    assert "mismatch: wrong-values" in debugger and "ONNX Abs(x: float32 [16, 8, 256, 256])" in debugger
    assert "y[i] = x[i];" in debugger  # the functions it judges
    assert any(s.get("tool") == "model_parser" for s in steps(db, result.attempt_id))
    assert result.stopped_by == "rounds"


@pytest.mark.slow
def test_the_unit_test_sends_wrong_functions_back_before_the_judge(db, solve):
    """Scaffolded MoKA: functions that copy instead of taking |x| fail the unit test and never reach
    the judge; the Debugger sees the first differing elements with their inputs; the repair passes
    the unit test and the judge rules on it. Without the unit test (moka-no-tests) both are judged."""
    result, backend = solve("moka", "scaffolded", "Abs", "moka_scaffolded_wrong.jsonl", db, Budget(rounds=1), best_of=1)
    assert [(v.verdict, v.judged_by) for v in result.verdicts] == [("wrong-values", "unit-test"), ("correct", "judge")]
    debugger = backend.asked("debugger")[0].messages[-1].content
    assert "The unit test called your functions on the task's own inputs" in debugger
    first = next(line for line in debugger.splitlines() if line.startswith("  y["))
    x = float(first.split("x = ")[1].split(" ->")[0])
    assert x < 0 and f"expected {abs(x):.6g}, got {x:.6g}" in first  # a negative input, copied
    assert db["evaluations"].count == 1 and result.best.evaluation_id is not None
    assert result.notes["unit_tests"] == {"run": 2, "failed": 1, "judged_at_end": 0}
    assert [s["stage"] for s in steps(db, result.attempt_id) if s["role"] == "unit-test" and "stage" in s] == ["values", "passed"]
    off, _ = solve("moka-no-tests", "scaffolded", "Abs", "moka_scaffolded_wrong.jsonl", db, Budget(rounds=1), best_of=1)
    assert [(v.verdict, v.judged_by) for v in off.verdicts] == [("wrong-values", "judge"), ("correct", "judge")]
    assert "unit_tests" not in off.notes


def test_moka_searches_again_from_fresh_drafts_while_unsolved(db, solve):
    """A search that ends unsolved with time left is followed by another from fresh drafts (new
    seeds, a fresh memory), whose best candidate the rounds then start from; moka-no-restarts stops
    after the first search. The unit test turns the wrong ones back, so only the last is judged."""
    identity = f"```cpp\n{(FIXTURES / 'functions' / 'Abs_identity.cpp').read_text()}```"
    right = f"```cpp\n{(FIXTURES / 'functions' / 'Abs.cpp').read_text()}```"
    plan = '{"diagnosis": "y copies x", "suggestions": [{"kind": "local", "fix": "take |x|"}], "lookups": []}'
    script = {"coder": [identity, identity, right], "debugger": [plan, plan]}
    result, backend = solve("moka", "scaffolded", "Abs", ScriptedReplay(script), db, Budget(rounds=1), best_of=1)
    assert [(v.verdict, v.judged_by) for v in result.verdicts] == [
        ("wrong-values", "unit-test"), ("wrong-values", "unit-test"), ("correct", "judge")]
    assert [r.seed for r in backend.asked("coder")] == [0, 1, 1000]  # draft, revise (round 1), the next search's draft
    assert len(result.notes["searches"]) == 2 and len(result.notes["searches"][0]) == 1
    assert db["evaluations"].count == 1
    once, _ = solve("moka-no-restarts", "scaffolded", "Abs", ScriptedReplay(script), db, Budget(rounds=1), best_of=1)
    assert [v.verdict for v in once.verdicts] == ["wrong-values", "wrong-values"] and len(once.notes["searches"]) == 1
    assert [v.judged_by for v in once.verdicts] == ["judge", "unit-test"]  # the furthest judged at the end, as always
    short, _ = solve("moka", "scaffolded", "Abs", ScriptedReplay(script), db, Budget(rounds=1, seconds=0.001), best_of=1)
    assert len(short.notes["searches"]) == 1  # no time left for another search's drafts


@pytest.mark.slow
def test_an_attempt_never_ends_on_the_unit_tests_word(db, solve):
    """One wrong sample: the unit test turns it back, and as nothing else was judged, the attempt
    ends by judging it; its recorded verdict is the judge's."""
    wrong = {"coder": [f"```cpp\n{(FIXTURES / 'functions' / 'Abs_identity.cpp').read_text()}```"]}
    result, _ = solve("one-shot", "scaffolded", "Abs", ScriptedReplay(wrong), db, Budget())
    assert [(v.verdict, v.judged_by) for v in result.verdicts] == [("wrong-values", "judge")]  # one candidate, counted once
    assert result.best is result.verdicts[0] and result.best.evaluation_id is not None
    assert [s["stage"] for s in steps(db, result.attempt_id) if s["role"] == "unit-test" and "stage" in s] == ["values"]
    assert result.notes["unit_tests"] == {"run": 1, "failed": 1, "judged_at_end": 1}
    best = db.conn.execute("SELECT best_evaluation_id FROM attempts WHERE id = ?", [result.attempt_id]).fetchone()[0]
    assert best == result.best.evaluation_id


@pytest.mark.slow
@pytest.mark.parametrize("mode, fixture, right, wrong, edit", [
    ("whole-file", "whole_file/abs_element_size.cpp", "elementSize()", "elementsize()", "line 11: 'elementSize'"),
    ("scaffolded", "functions/Abs.cpp", "std::fabs", "std::fab", "line 3: 'fabs'")])
def test_compiler_fixits_repair_a_misspelling_without_the_debugger(db, mode, fixture, right, wrong, edit, solve):
    """A correct kernel with a name misspelt ("did you mean ‘elementSize’?"): MoKA applies the
    compiler's fix-it to the model's code and the judge finds it correct; no planner is asked.
    Without fix-its the failed build is all there is in a budget of no rounds."""
    misspelt = (FIXTURES / fixture).read_text().replace(right, wrong)
    answer = {"coder": [f"```cpp\n{misspelt}```"]}
    result, backend = solve("moka", mode, "Abs", ScriptedReplay(answer), db, Budget(rounds=0), best_of=1)
    assert [v.verdict for v in result.verdicts] == ["compile-error", "correct"], [v.reason for v in result.verdicts]
    assert not backend.asked("debugger") and result.llm_calls == 1
    step = next(s for s in steps(db, result.attempt_id) if s.get("tool") == "compiler_fixits")
    assert step["result"] == edit  # in the model's own line numbers, whatever the scaffold around them
    off, _ = solve("moka", mode, "Abs", ScriptedReplay(answer), db, Budget(rounds=0), best_of=1, fixits=False)
    # scaffolded: the unit test's compile error, replaced at the end by the judge's own (an attempt ends on its word)
    assert [(v.verdict, v.judged_by) for v in off.verdicts] == [("compile-error", "judge")]


@pytest.mark.slow
def test_accelerator_keeps_the_faster_correct_kernel(db, solve):
    """A slow correct draft, a faster correct version, then a 'faster' wrong one: the best stays the
    faster correct kernel, the next round starts from it, and a repeated method is asked again."""
    result, backend = solve("moka", "scaffolded", "Abs", "moka_accelerator.jsonl", db, Budget(rounds=3), best_of=1)
    verdicts = [v.verdict for v in result.verdicts]
    assert verdicts == ["correct", "correct", "wrong-values", "compile-error"], [v.reason for v in result.verdicts]
    slow, fast = result.verdicts[0], result.verdicts[1]
    assert fast.speedup > slow.speedup * 1.5, (slow.speedup, fast.speedup)
    assert result.best is fast
    best = db.conn.execute("SELECT best_evaluation_id FROM attempts WHERE id = ?", [result.attempt_id]).fetchone()[0]
    assert best == fast.evaluation_id
    accelerator = backend.asked("accelerator")
    assert len(accelerator) == 4  # round 3 proposed a method already tried, and was asked again
    assert "skip the absolute value" in accelerator[3].messages[-1].content.split("never propose one of them again")[1]
    # Round 3 works on the faster correct code, not on the wrong one that came after it.
    third = backend.asked("coder")[3].messages[-1].content
    assert "std::fabs(x[i])" in third and "std::sin" not in third and "y[i] = x[i];" not in third
    profile = next(s for s in steps(db, result.attempt_id) if s.get("tool") == "performance_parser")
    assert f"speedup: {slow.speedup:.3g}x" in profile["result"]


@pytest.mark.slow
def test_one_shot_and_pass_at_k_in_both_modes(db, solve):
    """The baselines in both modes: what each is shown, and one attempts row per mode."""
    one_whole, backend = solve("one-shot", "whole-file", "Abs", ScriptedReplay(
        {"coder": [f"```cpp\n{(FIXTURES / 'whole_file' / 'abs_element_size.cpp').read_text()}```"]}), db, Budget())
    prompt = backend.requests[0].messages[-1].content
    assert "main_as_UnaryOp()" in prompt and "T* host() const;" in prompt
    one_scaffolded, backend = solve("one-shot", "scaffolded", "Abs", ScriptedReplay(
        {"coder": [f"```cpp\n{(FIXTURES / 'functions' / 'Abs.cpp').read_text()}```"]}), db, Budget())
    prompt = backend.requests[0].messages[-1].content
    assert "void mk_unary_abs(const float* x, float* y, size_t n);" in prompt and "CPUBackend" not in prompt
    k, backend = solve("pass@k", "scaffolded", "Abs", ScriptedReplay({"coder": [
        f"```cpp\n{(FIXTURES / 'functions' / 'Abs_identity.cpp').read_text()}```",
        f"```cpp\n{(FIXTURES / 'functions' / 'Abs.cpp').read_text()}```"]}), db, Budget(samples=2))
    assert [r.seed for r in backend.requests] == [0, 1]
    assert [v.verdict for v in k.verdicts] == ["wrong-values", "correct"] and k.best.correct
    assert one_whole.best.correct and one_scaffolded.best.correct
    rows = db.conn.execute("SELECT generator, mode FROM attempts ORDER BY id").fetchall()
    assert rows == [("one-shot", "whole-file"), ("one-shot", "scaffolded"), ("pass@k", "scaffolded")]


class BatchingReplay(ScriptedReplay):
    """A scripted backend that, like llama.cpp's, decodes several samples of one prompt together."""

    def __init__(self, script):
        super().__init__(script)
        self.batches = []

    def generate_many(self, request, seeds, temperatures):
        self.batches.append(list(seeds))
        return [self.generate(replace(request, seed=seed, temperature=t)) for seed, t in zip(seeds, temperatures)]


@pytest.mark.slow
def test_samples_of_one_prompt_are_asked_together(db, solve):
    """pass@k's k samples and MoKA's best-of-N drafts are one batched request (Chat.samples), then
    judged in order; MoKA stops judging at the first correct draft. The -no-batch ablation asks one
    by one."""
    answers = {"coder": [f"```cpp\n{(FIXTURES / 'functions' / name).read_text()}```" for name in ("Abs_identity.cpp", "Abs.cpp", "Abs.cpp")]}
    k, backend = solve("pass@k", "scaffolded", "Abs", BatchingReplay(answers), db, Budget(samples=3))
    assert backend.batches == [[0, 1, 2]] and [v.verdict for v in k.verdicts] == ["wrong-values", "correct", "correct"]
    moka, backend = solve("moka-no-accel", "scaffolded", "Abs", BatchingReplay(answers), db, Budget(samples=3))
    assert backend.batches == [[0, 1, 2]] and [v.verdict for v in moka.verdicts] == ["wrong-values", "correct"]
    single, backend = solve("pass@k-no-batch", "scaffolded", "Abs", BatchingReplay(answers), db, Budget(samples=3))
    assert backend.batches == [] and [r.seed for r in backend.requests] == [0, 1, 2]


def test_a_composite_task_never_shows_mnns_own_rewrite(settings):
    """A composite's converted graph is what MNN's transform for the operator makes: its native
    implementation. Neither the task block nor the Model Parser shows it; a CPU task's ops are shown."""
    from mkbench.agents import prompts
    from mkbench.agents.tools import model_parser

    composite = get_task("LogSoftmax_axis_2")
    assert composite.mnn.kind == "composite" and composite.mnn.converted_ops
    block = prompts.task_block(composite, framework=True)
    assert ", ".join(composite.mnn.converted_ops) not in block and "Reduction:MAXIMUM" not in block
    assert 'OnnxExtraManager::get()->insert("LogSoftmax"' in block
    view = model_parser.parse(composite, settings)
    assert view["mnn"] == [] and view["onnx"][0]["op"] == "LogSoftmax"
    assert "MNN " not in model_parser.render(view).replace("the kernel serves", "")

    unary = get_task("Abs")
    assert "MNN 3.6.1 converts the model to: UnaryOp:ABS" in prompts.task_block(unary, framework=True)
