"""One generator working on one task: the attempts row, its steps, the budget, and the judging.

Every generator does its work through an Attempt, so all of them record the same way:

    attempt = Attempt.start("moka", "scaffolded", task, device, chat, budget, db, run_id)
    answer = attempt.ask("coder", messages, seed=0)          # None once the budget is spent
    verdict = attempt.judge(candidate, role="coder")          # lint rejections never reach the compiler
    return attempt.finish("rounds")

Each LLM call becomes an `llm_calls` row (bound to the attempt and role) and a step; each lint
result, tool call and verdict is a step too, so `mkbench show ATTEMPT` can replay the whole run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import settings as settings_module
from .. import store
from ..judge.verdict import VERDICTS, Verdict
from ..llm.chat import Chat, Completion, LLMError, Message
from . import AttemptResult, Budget


@dataclass(frozen=True)
class Candidate:
    """What one answer gives to the judge."""

    code: str | None  # the model's code (the whole file, or the scaffold's functions)
    source: str | None  # the file to build (None when rejected)
    rejected: str | None = None  # the lint's one-line reason
    region: tuple[int, int] | None = None  # lines of the model's code in `source` (scaffolded)


def _plain(value):
    """JSON SQLite can read: an infinite or NaN float (a max error over non-finite outputs) becomes text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def rank(verdict: Verdict) -> tuple:
    """Order of merit: correct and fast first, then how far along the pipeline a failure got."""
    if verdict.correct:
        speed = verdict.speedup if verdict.speedup is not None else (
            verdict.native_median_ms / verdict.candidate_median_ms if verdict.native_median_ms and verdict.candidate_median_ms else 0.0)
        return (1, speed, 0)
    return (0, 0.0, VERDICTS.index(verdict.verdict) if verdict.verdict in VERDICTS else -1)


def best_of(verdicts) -> Verdict | None:
    """The fastest correct verdict, else the failure that got furthest (the first of equals)."""
    best = None
    for verdict in verdicts:
        if best is None or rank(verdict) > rank(best):
            best = verdict
    return best


class Attempt:
    """The record of one generator on one task and device, and its budget."""

    def __init__(self, generator: str, mode: str, task, device, chat: Chat, budget: Budget, db, run_id: str,
                 attempt_id: int, settings: settings_module.Settings | None, judge: Callable, worker: str):
        self.generator, self.mode, self.task, self.device = generator, mode, task, device
        self.chat, self.budget, self.db, self.run_id = chat, budget, db, run_id
        self.id, self.settings, self._judge, self.worker = attempt_id, settings, judge, worker
        self.started = time.monotonic()
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.verdicts: list[Verdict] = []
        self.candidates: list[Candidate] = []  # what each verdict judged, in order
        self.position = 0
        self.stopped: str | None = None

    @classmethod
    def start(cls, generator: str, mode: str, task, device, chat: Chat, budget: Budget, db, run_id: str,
              settings: settings_module.Settings | None = None, judge: Callable | None = None, worker: str = "0",
              config: dict | None = None) -> Attempt:
        """Insert the attempts row (status running) and return the attempt."""
        from ..devices import store_device

        if judge is None:
            from ..judge.evaluate import evaluate as judge
        worker = getattr(device, "worker", None) or worker  # a run's worker device names its build folder
        device_id = store_device(db, device)
        attempt_id = store.insert(db, "attempts", {
            "run_id": run_id, "task": task.name, "generator": generator, "mode": mode, "device_id": device_id,
            "best_evaluation_id": None, "status": "running",
            "summary": {"budget": budget.__dict__, "config": config or {}, "model": chat.backend.model,
                        "backend": chat.backend.name},
        })
        return cls(generator, mode, task, device, chat, budget, db, run_id, attempt_id, settings, judge, worker)

    # ------------------------------------------------------------ steps

    def step(self, role: str, content: dict) -> None:
        """Record one step of the trajectory."""
        store.insert(self.db, "steps", {"attempt_id": self.id, "position": self.position, "role": role,
                                        "content": json.dumps(_plain(content), default=str, ensure_ascii=False)})
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
            max_tokens: int = 1024, json_schema: dict | None = None, note: dict | None = None) -> Completion | None:
        """One LLM call as `role`; None (and the attempt marked stopped) when the budget is spent or the call fails."""
        spent = self.exhausted()
        if spent:
            self.stopped = self.stopped or spent
            return None
        started = time.monotonic()
        try:
            answer = self.chat.bound(self.id, role)(messages, seed=seed, temperature=temperature, max_tokens=max_tokens,
                                                     json_schema=json_schema)
        except LLMError as error:
            self.step(role, {"error": str(error), "seed": seed})
            self.stopped = self.stopped or f"llm-error: {str(error)[:120]}"
            return None
        self.calls += 1
        self.prompt_tokens += answer.prompt_tokens or 0
        self.completion_tokens += answer.completion_tokens or 0
        self.step(role, {"call_id": answer.call_id, "seed": answer.seed, "temperature": answer.temperature,
                         "answer": answer.text, "finish_reason": answer.finish_reason, "prompt_tokens": answer.prompt_tokens,
                         "completion_tokens": answer.completion_tokens, "evaluated_prompt_tokens": answer.evaluated_prompt_tokens,
                         "seconds": round(time.monotonic() - started, 3), **(note or {})})
        return answer

    def tool(self, name: str, args: dict, result: str) -> str:
        """Record a tool call (tree lookup, error extraction, ...) and return its result."""
        self.step("tool", {"tool": name, "args": args, "result": result})
        return result

    # ------------------------------------------------------------ judging

    def judge(self, candidate: Candidate, role: str = "judge", origin: dict | None = None) -> Verdict:
        """Lint-rejected candidates become compile errors here; the rest go to the judge."""
        if candidate.rejected is not None or candidate.source is None:
            reason = candidate.rejected or "no code in the answer"
            self.step("lint", {"ok": False, "reason": reason, "code": candidate.code, **(origin or {})})
            verdict = Verdict("compile-error", f"lint: {reason}", self.task.name, self.device.serial, compiled=False,
                              correct=False, compiler_output=f"mkbench lint: {reason}")
        else:
            if self.mode == "scaffolded":
                self.step("lint", {"ok": True, **(origin or {})})
            started = time.monotonic()
            kwargs = {"db": self.db, "worker": self.worker, "run_id": self.run_id}
            if self.settings is not None:
                kwargs["settings"] = self.settings
            verdict = self._judge(self.task, candidate.source, self.device, **kwargs)
            self.step("judge", {
                "verdict": verdict.verdict, "reason": verdict.reason, "evaluation_id": verdict.evaluation_id,
                "speedup": verdict.speedup, "native_median_ms": verdict.native_median_ms,
                "candidate_median_ms": verdict.candidate_median_ms, "max_abs_error": verdict.max_abs_error,
                "compiler_output": (verdict.compiler_output or "")[:4000], "flags": list(verdict.flags),
                "source_sha256": hashlib.sha256(candidate.source.encode()).hexdigest(),
                "seconds": round(time.monotonic() - started, 3), "stage_seconds": verdict.stage_seconds, **(origin or {}),
            })
        self.verdicts.append(verdict)
        self.candidates.append(candidate)
        return verdict

    def state(self) -> tuple[Candidate, Verdict] | None:
        """The candidate to go on from: the fastest correct one, else the furthest along (the latest of equals)."""
        best = None
        for pair in zip(self.candidates, self.verdicts):
            if best is None or rank(pair[1]) > rank(best[1]) or (rank(pair[1]) == rank(best[1]) and not pair[1].correct):
                best = pair
        return best

    # ------------------------------------------------------------ the end

    def best(self) -> Verdict | None:
        return best_of(self.verdicts)

    def finish(self, stopped_by: str, notes: dict | None = None) -> AttemptResult:
        """Close the attempts row with its summary and return the result."""
        stopped_by = self.stopped if self.stopped and stopped_by not in ("solved",) else stopped_by
        best = self.best()
        summary = {
            "stopped_by": stopped_by, "verdicts": [v.verdict for v in self.verdicts],
            "best": best.verdict if best else None, "speedup": best.speedup if best else None,
            "llm_calls": self.calls, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "seconds": round(self.elapsed(), 3), "notes": notes or {},
        }
        with store.transaction(self.db):
            row = self.db.conn.execute("SELECT summary FROM attempts WHERE id = ?", [self.id]).fetchone()
            merged = {**json.loads(row[0]), **summary} if row else summary
            self.db.conn.execute("UPDATE attempts SET status = ?, best_evaluation_id = ?, summary = ? WHERE id = ?",
                                 ["finished" if not stopped_by.startswith("llm-error") else "failed",
                                  best.evaluation_id if best else None, json.dumps(_plain(merged), default=str), self.id])
        return AttemptResult(
            task=self.task.name, generator=self.generator, mode=self.mode, device=self.device.serial, attempt_id=self.id,
            verdicts=tuple(self.verdicts), best=best, llm_calls=self.calls, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, seconds=round(self.elapsed(), 3), stopped_by=stopped_by,
            notes=notes or {},
        )

