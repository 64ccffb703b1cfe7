"""Generators: task + device + LLM + budget in, candidate kernels with their verdicts out.

One-shot, pass@k and MoKA share this interface; each records every step (prompt, answer,
tool calls, lint and build results, verdict) so `mkbench show ATTEMPT` can replay it and a
report can be rebuilt without re-running anything.

    oneshot.py     one request, judged as is            passk.py   k samples, the best counts
    moka.py        MoKA: draft, then plan (Debugger / Accelerator) and execute (Coder), N rounds
    modes.py       whole-file (the model writes the kernel file) or scaffolded (only its functions)
    attempt.py     an attempt's lifecycle (run_attempt: its row begun, ended finished or failed),
                   its steps, the budget and the judging every generator shares
    prompts.py     prompt templates (prompts/<role>.<mode>.md) rendered to chat messages
    trajectory.py  an attempt read back from the store (`mkbench show`)
    tools/         tree index, error extractor, model and performance parsers, lint, memory, fix-its,
                   the unit test before the judge, the operator's definition
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..devices import Device
from ..judge.verdict import Verdict
from ..tasks.spec import Task

MODES = ("whole-file", "scaffolded")


@dataclass(frozen=True)
class Budget:
    """Per-task limits; whichever runs out first ends the attempt cleanly."""

    calls: int = 40  # LLM calls
    tokens: int = 200_000  # prompt + completion tokens
    seconds: float = 3600.0  # wall time
    rounds: int = 10  # MoKA rounds (plan + execute); pass@k uses `samples`
    samples: int = 10  # k for pass@k, N for best-of-N


@dataclass(frozen=True)
class AttemptRow:
    """Where a generator records its attempt: the store, the run (None outside a run) and the
    attempts row begun for it (see attempt.run_attempt, which also ends it)."""

    db: Any
    run_id: str | None
    id: int


@dataclass(frozen=True)
class AttemptResult:
    """What one generator produced for one task on one device."""

    task: str
    generator: str  # one-shot | pass@k | moka (+ ablation suffix, e.g. moka-no-tree)
    mode: str  # whole-file | scaffolded
    device: str
    attempt_id: int | None  # row in the attempts table
    verdicts: tuple[Verdict, ...]  # every candidate judged, in order
    best: Verdict | None  # the best correct one (fastest), else the furthest-along failure
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    stopped_by: str  # "solved", "budget:calls", "budget:tokens", "budget:seconds", "rounds", "samples"
    notes: dict = field(default_factory=dict)


class Generator(Protocol):
    name: str
    mode: str

    def solve(self, task: Task, device: Device, chat, budget: Budget, row: AttemptRow) -> AttemptResult:
        """Produce and judge candidates for one task, recording its steps under `row`."""
        ...


# What each generator can be run without ("moka-no-tree-no-tests"): name part -> its constructor's
# switch. tests: the unit test before the judge (scaffolded mode); definition: the operator's
# attributes in words and ONNX's reference implementation in the task block; names: decoding kept
# to the MNN names the tree has after OpType_, DataType_, main_as_, MNN:: (whole-file) and after
# `.`/`->` on variables of MNN types (whole-file, and composites' functions in scaffolded mode);
# batch: several samples of one prompt decoded together (pass@k's k, MoKA's best-of-N drafts);
# restarts: MoKA searches again from fresh drafts while unsolved and time is left.
_SHARED = {"tests": "unit_tests", "definition": "definition", "names": "api_names"}
SWITCHES = {"one-shot": _SHARED, "pass@k": {**_SHARED, "batch": "batched"},
            "moka": {"tree": "tree", "errors": "errors", "accel": "accelerator", **_SHARED, "batch": "batched",
                     "restarts": "restarts"}}
# What a generator with one part switched off does, in words (run.config's descriptions).
WITHOUT = {"tree": "without the Tree Builder", "errors": "without the Error Extractor", "accel": "that stops once correct",
           "tests": "without the unit test before the judge (scaffolded mode)",
           "definition": "without the operator's definition in its prompts",
           "names": "whose decoding may write any MNN name", "batch": "asking for its samples one by one",
           "restarts": "that stops after its first search (drafts and rounds) even with time left"}
# Every generator by its report name: the three, and each with one part switched off (the ablations).
GENERATORS = tuple(name for base, parts in SWITCHES.items() for name in (base, *(f"{base}-no-{part}" for part in parts)))


def generator_name(base: str, generator) -> str:
    """A generator's report name: its base and every switch it has off, in SWITCHES order."""
    return base + "".join(f"-no-{part}" for part, switch in SWITCHES[base].items() if not getattr(generator, switch))


def make_generator(name: str, mode: str = "whole-file", **options) -> Generator:
    """A generator by its report name (see GENERATORS), in one of MODES; options go to its constructor."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    base, *off = name.split("-no-")
    if base not in SWITCHES:
        raise ValueError(f"unknown generator {name!r}: use one of {', '.join(GENERATORS)}")
    if unknown := set(off) - set(SWITCHES[base]):
        raise ValueError(f"unknown {base} ablation {', '.join(sorted(unknown))} in {name!r}")
    switched = {SWITCHES[base][part]: False for part in off}
    if base == "one-shot":
        from .oneshot import OneShot

        return OneShot(mode=mode, **switched, **options)
    if base == "pass@k":
        from .passk import PassK

        return PassK(mode=mode, **switched, **options)
    from .moka import MoKA

    return MoKA(mode=mode, **switched, **options)
