"""One generator working on one task: the attempt's lifecycle, its steps, the budget, the judging.

An attempt is one row whose status moves running -> finished | failed, begun and ended here only:

    row, result, error = run_attempt(generator, task, device, chat, budget, db, run_id)

Inside, every generator does its work through an Attempt, so all of them record the same way:

    attempt = Attempt.start("moka", "scaffolded", task, device, chat, budget, row)
    answer = attempt.ask("coder", messages, seed=0)          # None once the budget is spent
    verdict = attempt.judge(candidate, role="coder")          # lint rejections never reach the compiler
    return attempt.finish("rounds")

Each LLM call becomes an `llm_calls` row (bound to the attempt and role) and a step; each lint
result, tool call and verdict is a step too, so `mkbench show ATTEMPT` can replay the whole run.
A fault of the harness (not of the kernel) ends the row failed; a retry is a new attempt.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import settings as settings_module
from ..devices import DeviceLost, store_device
from ..judge.verdict import VERDICTS, Verdict
from ..llm.chat import Chat, Completion, LLMError, Message
from ..store import rows
from . import AttemptResult, AttemptRow, Budget, Generator


@dataclass(frozen=True)
class Candidate:
    """What one answer gives to the judge."""

    code: str | None  # the model's code (the whole file, or the scaffold's functions)
    source: str | None  # the file to build (None when rejected)
    rejected: str | None = None  # the lint's one-line reason
    region: tuple[int, int] | None = None  # lines of the model's code in `source` (scaffolded)
    repairs: tuple[str, ...] = ()  # mechanical edits made to the model's code before the lint (recorded)


def _repairs(candidate: Candidate) -> dict:
    return {"repairs": list(candidate.repairs)} if candidate.repairs else {}


def rank(verdict: Verdict) -> tuple:
    """Order of merit: correct and fast first (a kernel kept out of the wins, `Verdict.blocked`,
    below every clean one: it never wins an attempt on a figure nobody trusts), then how far along
    the pipeline a failure got."""
    if verdict.correct:
        speed = verdict.speedup if verdict.speedup is not None else (
            verdict.native_median_ms / verdict.candidate_median_ms if verdict.native_median_ms and verdict.candidate_median_ms else 0.0)
        return (1, 0 if verdict.blocked else 1, speed, 0)
    return (0, 0, 0.0, VERDICTS.index(verdict.verdict) if verdict.verdict in VERDICTS else -1)


def best_of(verdicts) -> Verdict | None:
    """The fastest correct verdict, else the failure that got furthest (the first of equals); a
    unit test's verdict only when nothing else judged the attempt (Attempt.finish sees to that)."""
    verdicts = list(verdicts)
    best = None
    for verdict in [v for v in verdicts if v.judged_by != "unit-test"] or verdicts:
        if best is None or rank(verdict) > rank(best):
            best = verdict
    return best


class Attempt:
    """The record of one generator on one task and device, and its budget."""

    def __init__(self, generator: str, mode: str, task, device, chat: Chat, budget: Budget, row: AttemptRow,
                 settings: settings_module.Settings | None, judge: Callable, worker: str, config: dict):
        self.generator, self.mode, self.task, self.device = generator, mode, task, device
        self.chat, self.budget, self.db, self.run_id = chat, budget, row.db, row.run_id
        self.id, self.settings, self._judge, self.worker = row.id, settings, judge, worker
        self.config = config
        self.started = time.monotonic()
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.verdicts: list[Verdict] = []
        self.candidates: list[Candidate] = []  # what each verdict judged, in order
        self.position = 0
        self.stopped: str | None = None
        self.unit_tests = None  # unit_test.UnitTests once open_mode made them (scaffolded mode)
        self.unit_test_runs = {"run": 0, "failed": 0, "judged_at_end": 0}

    @classmethod
    def start(cls, generator: str, mode: str, task, device, chat: Chat, budget: Budget, row: AttemptRow,
              settings: settings_module.Settings | None = None, judge: Callable | None = None, worker: str = "0",
              config: dict | None = None) -> Attempt:
        """The attempt of the row run_attempt began; `config` (the generator's options) goes into its summary."""
        if judge is None:
            from ..judge.evaluate import evaluate as judge
        worker = getattr(device, "worker", None) or worker  # a run's worker device names its build folder
        return cls(generator, mode, task, device, chat, budget, row, settings, judge, worker, config or {})

    # ------------------------------------------------------------ steps

    def step(self, role: str, content: dict) -> None:
        """Record one step of the trajectory."""
        rows.add_step(self.db, self.id, self.position, role, content)
        self.position += 1

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def exhausted(self) -> str | None:
        """Which budget is spent ("budget:calls" ...), or None."""
        if self.calls >= self.budget.calls:
            return "budget:calls"
        if self.prompt_tokens + self.completion_tokens >= self.budget.tokens:
            return "budget:tokens"
        if self.elapsed() >= self.budget.seconds:
            return "budget:seconds"
        return None

    def ask(self, role: str, messages: list[Message], *, seed: int = 0, temperature: float | None = None,
            max_tokens: int = 1024, json_schema: dict | None = None, note: dict | None = None,
            identifiers=None) -> Completion | None:
        """One LLM call as `role`; None (and the attempt marked stopped) when the budget is spent or the call fails."""
        spent = self.exhausted()
        if spent:
            self.stopped = self.stopped or spent
            return None
        started = time.monotonic()
        try:
            answer = self.chat.bound(self.id, role)(messages, seed=seed, temperature=temperature, max_tokens=max_tokens,
                                                     json_schema=json_schema, identifiers=identifiers)
        except LLMError as error:
            self.step(role, {"error": str(error), "seed": seed})
            self.stopped = self.stopped or f"llm-error: {str(error)[:120]}"
            return None
        self._answered(role, answer, time.monotonic() - started, note)
        return answer

    def ask_many(self, role: str, messages: list[Message], *, seeds, temperatures, max_tokens: int = 1024,
                 identifiers=None) -> list[Completion]:
        """Several samples of one prompt as `role` (decoded together where the backend can:
        Chat.samples), as many as the calls budget allows; [] when it is spent or the call fails."""
        spent = self.exhausted()
        if spent:
            self.stopped = self.stopped or spent
            return []
        n = min(len(seeds), self.budget.calls - self.calls)
        started = time.monotonic()
        try:
            answers = self.chat.bound(self.id, role).samples(messages, list(seeds)[:n], list(temperatures)[:n],
                                                             max_tokens=max_tokens, identifiers=identifiers)
        except LLMError as error:
            self.step(role, {"error": str(error), "seeds": list(seeds)[:n]})
            self.stopped = self.stopped or f"llm-error: {str(error)[:120]}"
            return []
        for answer in answers:
            self._answered(role, answer, (time.monotonic() - started) / len(answers), {"batch": len(answers)})
        return answers

    def _answered(self, role: str, answer: Completion, seconds: float, note: dict | None) -> None:
        self.calls += 1
        self.prompt_tokens += answer.prompt_tokens or 0
        self.completion_tokens += answer.completion_tokens or 0
        self.step(role, {"call_id": answer.call_id, "seed": answer.seed, "temperature": answer.temperature,
                         "answer": answer.text, "finish_reason": answer.finish_reason, "prompt_tokens": answer.prompt_tokens,
                         "completion_tokens": answer.completion_tokens, "evaluated_prompt_tokens": answer.evaluated_prompt_tokens,
                         "seconds": round(seconds, 3), **(note or {})})

    def tool(self, name: str, args: dict, result: str) -> str:
        """Record a tool call (tree lookup, error extraction, ...) and return its result."""
        self.step("tool", {"tool": name, "args": args, "result": result})
        return result

    # ------------------------------------------------------------ judging

    def judge(self, candidate: Candidate, role: str = "judge", origin: dict | None = None, unit_test: bool = True) -> Verdict:
        """Lint-rejected candidates become compile errors here; the rest go to the unit test (when
        the attempt has one), and those that pass it to the judge."""
        if candidate.rejected is not None or candidate.source is None:
            reason = candidate.rejected or "no code in the answer"
            self.step("lint", {"ok": False, "reason": reason, "code": candidate.code, **_repairs(candidate), **(origin or {})})
            verdict = Verdict("compile-error", f"lint: {reason}", self.task.name, self.device.serial, compiled=False,
                              correct=False, compiler_output=f"mkbench lint: {reason}", judged_by="lint")
        else:
            if self.mode == "scaffolded":
                self.step("lint", {"ok": True, **_repairs(candidate), **(origin or {})})
            tested = self._unit_test(candidate, origin) if unit_test and self.unit_tests is not None else None
            verdict = tested or self._judged(candidate, origin)
        self.verdicts.append(verdict)
        self.candidates.append(candidate)
        return verdict

    def _judged(self, candidate: Candidate, origin: dict | None) -> Verdict:
        started = time.monotonic()
        verdict = self._judge(self.task, candidate.source, self.device, self.settings, db=self.db, worker=self.worker,
                              run_id=self.run_id)
        self.step("judge", {
            "verdict": verdict.verdict, "reason": verdict.reason, "evaluation_id": verdict.evaluation_id,
            "speedup": verdict.speedup, "native_median_ms": verdict.native_median_ms,
            "candidate_median_ms": verdict.candidate_median_ms, "max_abs_error": verdict.max_abs_error,
            "compiler_output": (verdict.compiler_output or "")[:4000], "flags": list(verdict.flags),
            "source_sha256": hashlib.sha256(candidate.source.encode()).hexdigest(),
            "seconds": round(time.monotonic() - started, 3), "stage_seconds": verdict.stage_seconds, **(origin or {}),
        })
        return verdict

    def _unit_test(self, candidate: Candidate, origin: dict | None) -> Verdict | None:
        """Run the unit test on the candidate's functions: its verdict when they fail it, else None."""
        from ..judge.session import target_of
        from .tools.unit_test import UnitTestUnavailable

        settings = self.settings or settings_module.load()
        folder = settings.work_dir / "unit-tests" / f"{self.worker}-{self.id}"
        try:
            outcome = self.unit_tests.run(candidate.code or "", target_of(self.device), folder)
        except UnitTestUnavailable as error:  # ours, not the model's: the judge decides alone
            self.step("unit-test", {"error": str(error)[:500], **(origin or {})})
            return None
        self.unit_test_runs["run"] += 1
        self.step("unit-test", {"passed": outcome.passed, "stage": outcome.stage, "message": outcome.message,
                                "details": outcome.details[:4000], "seconds": outcome.seconds, **(origin or {})})
        if outcome.passed:
            return None
        self.unit_test_runs["failed"] += 1
        verdict = {"compile": "compile-error", "values": "wrong-values", "shape": "wrong-shape"}.get(outcome.stage, outcome.stage)
        return Verdict(verdict, outcome.message, self.task.name, self.device.serial, compiled=outcome.stage != "compile",
                       correct=False, compiler_output=outcome.details if outcome.stage == "compile" else "",
                       judged_by="unit-test", details=outcome.details if outcome.stage != "compile" else "")

    def state(self, since: int = 0) -> tuple[Candidate, Verdict] | None:
        """The candidate to go on from: the fastest correct one, else the furthest along (the latest of
        equals), among the candidates from position `since` on (a MoKA search's own)."""
        best = None
        for pair in zip(self.candidates[since:], self.verdicts[since:]):
            if best is None or rank(pair[1]) > rank(best[1]) or (rank(pair[1]) == rank(best[1]) and not pair[1].correct):
                best = pair
        return best

    # ------------------------------------------------------------ the end

    def best(self) -> Verdict | None:
        return best_of(self.verdicts)

    def finish(self, stopped_by: str, notes: dict | None = None) -> AttemptResult:
        """What the attempt produced (run_attempt writes it into the row). When only the unit test
        saw its candidates, the furthest of them goes to the judge now, and the judge's verdict
        takes the unit test's place (each candidate counts once, for pass@k too): an attempt's
        verdict is the judge's (or the lint's), never the unit test's."""
        judged_by = {v.judged_by for v in self.verdicts}
        if "unit-test" in judged_by and judged_by <= {"unit-test", "lint"}:
            tested = [(rank(v), -i) for i, v in enumerate(self.verdicts) if v.judged_by == "unit-test"]
            furthest = -max(tested)[1]
            self.unit_test_runs["judged_at_end"] += 1
            self.judge(self.candidates[furthest], origin={"judged_at_end": True}, unit_test=False)
            self.verdicts[furthest] = self.verdicts.pop()
            self.candidates.pop()
        if self.unit_test_runs["run"]:
            notes = {**(notes or {}), "unit_tests": dict(self.unit_test_runs)}
        stopped_by = self.stopped if self.stopped and stopped_by not in ("solved",) else stopped_by
        return AttemptResult(
            task=self.task.name, generator=self.generator, mode=self.mode, device=self.device.serial, attempt_id=self.id,
            verdicts=tuple(self.verdicts), best=self.best(), llm_calls=self.calls, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, seconds=round(self.elapsed(), 3), stopped_by=stopped_by,
            notes={**({"config": self.config} if self.config else {}), **(notes or {})},
        )


# ---------------------------------------------------------------- the lifecycle of an attempt


def verdict_fields(verdict: Verdict) -> dict:
    """What the report needs of a verdict when it has no evaluation row (a lint rejection, a replayed attempt)."""
    return {"verdict": verdict.verdict, "reason": verdict.reason, "compiled": verdict.compiled, "correct": verdict.correct,
            "speedup": verdict.speedup, "speedup_low": verdict.speedup_low, "speedup_high": verdict.speedup_high,
            "timing_reportable": verdict.timing_reportable, "evaluation_id": verdict.evaluation_id}


def summary_of(result: AttemptResult) -> dict:
    """The attempts row's summary: cost, why it stopped, and every candidate's verdict."""
    return {
        "llm_calls": result.llm_calls, "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "seconds": round(result.seconds, 3), "stopped_by": result.stopped_by, "notes": result.notes,
        "verdicts": [v.verdict for v in result.verdicts], "best": result.best.verdict if result.best else None,
        "speedup": result.best.speedup if result.best else None,
        "candidates": [verdict_fields(v) for v in result.verdicts],
        "best_verdict": verdict_fields(result.best) if result.best else None,
    }


def begin(db, run_id: str | None, generator: str, mode: str, task, device, chat: Chat | None, budget: Budget) -> AttemptRow:
    """Begin an attempt's row (status running)."""
    backend = getattr(chat, "backend", None)
    summary = {"budget": budget.__dict__, "model": getattr(backend, "model", None), "backend": getattr(backend, "name", None)}
    attempt_id = rows.start_attempt(db, run_id, task.name, generator, mode, store_device(db, device), summary)
    return AttemptRow(db, run_id, attempt_id)


def harness_error(fault: BaseException) -> str:
    """One line naming a fault of the harness, for the failed attempt's row."""
    return f"{type(fault).__name__}: {str(fault).splitlines()[0] if str(fault) else ''}"[:500]


def record_failure(db, run_id: str | None, generator: str, mode: str, task, device, budget: Budget, error: str) -> AttemptRow:
    """An attempt that failed before its generator could start (it could not be made): begun and ended failed."""
    row = begin(db, run_id, generator, mode, task, device, None, budget)
    rows.fail_attempt(db, row.id, error, {"seconds": 0.0, "stopped_by": "error", "candidates": [], "best_verdict": None})
    return row


def run_attempt(generator: Generator, task, device, chat: Chat | None, budget: Budget, db, run_id: str | None
                ) -> tuple[AttemptRow, AttemptResult | None, str | None]:
    """Begin the attempt's row, let the generator solve the task, end the row: finished, or failed
    when the generator gave up on a model error or raised (a fault of the harness, retried as a new
    attempt). Returns (row, result, error). A lost device ends the row failed and is re-raised, so
    the caller can give the item back to its queue."""
    row = begin(db, run_id, generator.name, generator.mode, task, device, chat, budget)
    started = time.monotonic()
    try:
        result = generator.solve(task, device, chat, budget, row)
    except DeviceLost as lost:
        rows.fail_attempt(db, row.id, f"device lost: {str(lost)[:200]}", {"seconds": round(time.monotonic() - started, 3)})
        raise
    except Exception as fault:  # the harness failed, not the candidate
        error = harness_error(fault)
        rows.fail_attempt(db, row.id, error, {"seconds": round(time.monotonic() - started, 3), "stopped_by": "error",
                                              "candidates": [], "best_verdict": None})
        return row, None, error
    status = "failed" if result.stopped_by.startswith("llm-error") else "finished"
    result = replace(result, attempt_id=row.id)
    rows.finish_attempt(db, row.id, status, result.best.evaluation_id if result.best else None, summary_of(result))
    return row, result, (f"the generator gave up: {result.stopped_by}" if status == "failed" else None)
