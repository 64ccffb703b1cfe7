"""One-shot: one request for the task, judged as is (the paper's baseline)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import settings as settings_module
from . import AttemptResult, AttemptRow, Budget, generator_name, prompts
from .attempt import Attempt
from .modes import open_mode


def draw(attempt: Attempt, mode, seed: int, temperature: float | None = None):
    """Ask the Coder once for the task and judge the answer; None when the budget is spent."""
    messages = prompts.render(f"coder-draft.{mode.name}", **mode.draft())
    answer = attempt.ask("coder", messages, seed=seed, temperature=temperature, max_tokens=mode.max_tokens,
                         identifiers=mode.identifiers)
    if answer is None:
        return None
    return attempt.judge(mode.candidate(answer.text), origin={"seed": seed})


def draws(attempt: Attempt, mode, seeds, temperatures, batched: bool, until_correct: bool = False, after=None) -> list:
    """Samples of the Coder's first request, each judged in order (stopping at the first correct
    one with `until_correct`; `after(verdict)` may replace a verdict, e.g. MoKA's fix-its). With
    `batched`, they are decoded together first (Attempt.ask_many); otherwise asked one by one."""
    after = after or (lambda verdict: verdict)
    verdicts = []
    if not batched:
        for seed, temperature in zip(seeds, temperatures):
            verdict = after(draw(attempt, mode, seed, temperature))
            if verdict is None:
                break
            verdicts.append(verdict)
            if until_correct and verdict.correct:
                break
        return verdicts
    messages = prompts.render(f"coder-draft.{mode.name}", **mode.draft())
    answers = attempt.ask_many("coder", messages, seeds=seeds, temperatures=temperatures, max_tokens=mode.max_tokens,
                               identifiers=mode.identifiers)
    for answer in answers:
        verdict = after(attempt.judge(mode.candidate(answer.text), origin={"seed": answer.seed}))
        verdicts.append(verdict)
        if until_correct and verdict.correct:
            break
    return verdicts


@dataclass
class OneShot:
    """One request, the whole kernel (whole-file) or its functions (scaffolded), judged as is."""

    mode: str = "whole-file"
    settings: settings_module.Settings | None = None
    judge: Callable | None = None  # the judge's evaluate() unless a test says otherwise
    worker: str = "0"
    unit_tests: bool = True  # scaffolded mode: functions that fail the unit test go back, not to the judge
    definition: bool = True  # the operator's attributes in words and ONNX's reference in the task block
    api_names: bool = True  # whole-file mode: after OpType_, main_as_, MNN:: ... only names the tree has

    @property
    def name(self) -> str:
        return generator_name("one-shot", self)

    def solve(self, task, device, chat, budget: Budget, row: AttemptRow) -> AttemptResult:
        attempt = Attempt.start(self.name, self.mode, task, device, chat, budget, row, self.settings, self.judge,
                                self.worker, config={"unit_tests": self.unit_tests, "definition": self.definition,
                                                            "api_names": self.api_names})
        mode = open_mode(attempt, self.mode, unit_tests=self.unit_tests, definition=self.definition, api_names=self.api_names)
        if mode is None:
            return attempt.finish("unsupported")
        verdict = draw(attempt, mode, seed=0)
        return attempt.finish("solved" if verdict is not None and verdict.correct else "samples")
