"""pass@k: k independent samples (seeds 0..k-1), solved if any is; the best of them counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import settings as settings_module
from . import AttemptResult, AttemptRow, Budget, generator_name
from .attempt import Attempt
from .modes import open_mode
from .oneshot import draws


@dataclass
class PassK:
    """k samples of the one-shot request; every sample is judged (fast_p counts the fastest correct one)."""

    mode: str = "whole-file"
    k: int | None = None  # None: the budget's `samples` (10, as in the paper)
    temperature: float | None = None  # None: the model's recommended sampling temperature
    settings: settings_module.Settings | None = None
    judge: Callable | None = None
    worker: str = "0"
    unit_tests: bool = True  # scaffolded mode: samples that fail the unit test are not judged
    definition: bool = True  # the operator's attributes in words and ONNX's reference in the task block
    api_names: bool = True  # whole-file mode: after OpType_, main_as_, MNN:: ... only names the tree has
    batched: bool = True  # the k samples decoded together (llm/batched.py), then judged in order

    @property
    def name(self) -> str:
        return generator_name("pass@k", self)

    def solve(self, task, device, chat, budget: Budget, row: AttemptRow) -> AttemptResult:
        k = self.k or budget.samples
        attempt = Attempt.start(self.name, self.mode, task, device, chat, budget, row, self.settings, self.judge,
                                self.worker, config={"k": k, "temperature": self.temperature, "unit_tests": self.unit_tests,
                                        "definition": self.definition, "api_names": self.api_names,
                                        "batched": self.batched})
        mode = open_mode(attempt, self.mode, unit_tests=self.unit_tests, definition=self.definition, api_names=self.api_names)
        if mode is None:
            return attempt.finish("unsupported")
        draws(attempt, mode, list(range(k)), [self.temperature] * k, self.batched)
        return attempt.finish("samples", notes={"k": k})
