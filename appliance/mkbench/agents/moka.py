"""MoKA: plan and execute, up to N rounds per task; the best correct kernel is kept.

    Coder        the only role that writes code: drafts (best-of-N in scaffolded mode), then
                 applies each plan, in a fresh context every time
    Debugger     a build failure: the Error Extractor's dictionary (whole-file) or the first error
                 (scaffolded), cross-file errors with MNN's source from the Tree Builder;
                 a wrong result: the Model Parser's view of the ONNX node, the MNN ops and the mismatch
    Accelerator  once correct: the Performance Parser's profile and the optimisations tried; one
                 bottleneck, one method, one plan, never one already tried
    Memory       every plan and what came of it, shared by the two planners
    Fix-its      before the Debugger sees a failed build, the compiler's own suggestions ("did you
                 mean ‘main_as_Pool’?") are applied to the model's code and judged, with no LLM call

Planners answer JSON (constrained by a grammar where the backend can) and may name MNN symbols to
look up in the tree index; the Coder gets the plan and what the lookups found. Each round starts
from the best candidate so far: the fastest correct one, else the one that got furthest, so a
faster but wrong acceleration never replaces a correct kernel. Ablations switch off the Tree
Builder (no lookups, no MNN source with errors), the Error Extractor (raw compiler output) or
the Accelerator (stop at the first correct kernel); `fixits=False` leaves compiler fix-its out.

A search (drafts, then the rounds from its own best candidate) that ends unsolved with time left
is followed by another from fresh drafts (new seeds, a fresh Memory), until a kernel is correct or
the budget is spent: best-of-N sized by the time budget rather than fixed, which the unit test
makes cheap (it turns most wrong drafts back before the judge). The best kernel is the best of
every search. `restarts=False` (moka-no-restarts) stops after the first search.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import settings as settings_module
from ..llm.chat import Message
from . import AttemptResult, AttemptRow, Budget, generator_name, prompts
from .attempt import Attempt, Candidate
from .modes import open_mode
from .oneshot import draws
from .tools import errors as error_extractor
from .tools import fixits as compiler_fixits
from .tools import model_parser, perf_parser
from .tools.memory import Memory
from .tools.tree import TreeIndex

PLAN_TOKENS = 400
DRAFT_TEMPERATURES = (None, 0.4, 0.8, 1.0)  # best-of-N: the model's own temperature first, then wider
RESTART_SEEDS = 1000  # search k draws with seeds k*1000 + n and plans with k*1000 + round: no search repeats another
_TEXT = {"type": "string"}
DEBUGGER_SCHEMA = {"type": "object", "properties": {
    "diagnosis": _TEXT,
    "suggestions": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        "type": "object", "properties": {"kind": {"enum": ["local", "crossfile"]}, "fix": _TEXT}, "required": ["kind", "fix"]}},
}, "required": ["diagnosis", "suggestions"]}
ACCELERATOR_SCHEMA = {"type": "object", "properties": {"bottleneck": _TEXT, "method": _TEXT, "plan": _TEXT},
                      "required": ["bottleneck", "method", "plan"]}
LOOKUPS = {"type": "array", "maxItems": 3, "items": _TEXT}
LOOKUP_HINT = {  # what the planners may ask MNN's tree index for, per mode
    "whole-file": (" If you need an MNN declaration you have not seen, name it in \"lookups\" (for example "
                   "\"Tensor::elementSize\" or \"CPUBackend\") and the Coder will get it; otherwise leave \"lookups\" empty."),
    "scaffolded": (" If a part of MNN's documentation would help (for example \"ARM NEON optimisation\"), name it in "
                   "\"lookups\" and the Coder will get it; otherwise leave \"lookups\" empty."),
}
FORMATS = {
    "debugger": '{"diagnosis": "...", "suggestions": [{"kind": "local" or "crossfile", "fix": "..."}]}',
    "accelerator": '{"bottleneck": "...", "method": "...", "plan": "..."}',
}


@dataclass
class MoKA:
    mode: str = "whole-file"
    tree: bool = True  # Tree Builder: lookups, and MNN's source with cross-file errors
    errors: bool = True  # Error Extractor: the structured dictionary instead of the raw log
    accelerator: bool = True  # go on optimising once correct
    fixits: bool = True  # apply the compiler's fix-its to a failed build before the Debugger
    unit_tests: bool = True  # scaffolded mode: the unit test before the judge, its differences to the Debugger
    definition: bool = True  # the operator's attributes in words and ONNX's reference in the task block
    api_names: bool = True  # whole-file mode: after OpType_, main_as_, MNN:: ... only names the tree has
    batched: bool = True  # best-of-N drafts decoded together (llm/batched.py), then judged in order
    restarts: bool = True  # while unsolved and time is left after the rounds, search again from fresh drafts
    best_of: int | None = None  # drafts before the rounds (None: 1 whole-file as published, 4 scaffolded)
    settings: settings_module.Settings | None = None
    judge: Callable | None = None
    worker: str = "0"

    @property
    def name(self) -> str:
        return generator_name("moka", self)

    def solve(self, task, device, chat, budget: Budget, row: AttemptRow) -> AttemptResult:
        config = {"tree": self.tree, "errors": self.errors, "accelerator": self.accelerator, "best_of": self.best_of,
                  "fixits": self.fixits, "unit_tests": self.unit_tests,
                  "definition": self.definition, "api_names": self.api_names, "batched": self.batched,
                  "restarts": self.restarts}
        attempt = Attempt.start(self.name, self.mode, task, device, chat, budget, row, self.settings, self.judge,
                                self.worker, config=config)
        index = TreeIndex.load(self.settings).for_targets(task.mnn.targets if task.mnn else ())
        mode = open_mode(attempt, self.mode, index, unit_tests=self.unit_tests, definition=self.definition,
                         api_names=self.api_names)
        if mode is None:
            return attempt.finish("unsupported")
        drafts = self.best_of or (1 if mode.name == "whole-file" else min(4, budget.samples))
        memories, search, first_draws = [], 0, None
        while True:  # one plan-and-execute search; another from fresh drafts while unsolved and time is left
            began, since = time.monotonic(), len(attempt.verdicts)
            memory = Memory()
            memories.append(memory)
            # 1. draft: best-of-N, judged in order until one is correct
            seeds = [search * RESTART_SEEDS + n for n in range(drafts)]
            draws(attempt, mode, seeds, [DRAFT_TEMPERATURES[n % len(DRAFT_TEMPERATURES)] for n in range(drafts)],
                  self.batched and drafts > 1, until_correct=True, after=lambda verdict: self._fixed(attempt, mode, verdict))
            first_draws = first_draws or time.monotonic() - began
            for round_ in range(1, budget.rounds + 1):  # 2. plan and execute, from this search's best candidate
                state = attempt.state(since)
                if state is None or attempt.exhausted() or attempt.stopped or (state[1].correct and not self.accelerator):
                    break
                candidate, verdict = state
                role, plan = self._plan(attempt, mode, index, memory, candidate, verdict, search * RESTART_SEEDS + round_)
                if plan is None:
                    break
                memory.add(round_, role, plan)
                revised = self._revise(attempt, mode, index, candidate, plan, search * RESTART_SEEDS + round_)
                if revised is None:
                    break
                memory.settle(_outcome(revised))
            search += 1
            state = attempt.state()
            if not self._restart(attempt, state, first_draws):
                break
        solved = state is not None and state[1].correct
        return attempt.finish("solved" if solved and not self.accelerator else "rounds",
                              notes={"searches": [m.to_list() for m in memories]})

    def _restart(self, attempt: Attempt, state, first_draws: float) -> bool:
        """Whether to search again from fresh drafts: only with restarts on, no correct kernel yet, no
        budget spent, and time left for at least what the first search's drafts took (best-of-N sized
        by the time budget: the unit test turns most wrong drafts back at no judge cost)."""
        if not self.restarts or (state is not None and state[1].correct) or attempt.stopped or attempt.exhausted():
            return False
        return attempt.budget.seconds - attempt.elapsed() >= first_draws

    # ------------------------------------------------------------ the planners

    def _plan(self, attempt: Attempt, mode, index, memory: Memory, candidate: Candidate, verdict, round_: int):
        """(role, plan) from the Debugger or the Accelerator; plan None when the budget is spent."""
        values = {**mode.base(), "code": candidate.code or "(no code)", "memory": memory.render(),
                  "lookup_hint": LOOKUP_HINT[mode.name] if self.tree else ""}
        if verdict.correct:
            role, template, schema = "accelerator", f"accelerator.{mode.name}", ACCELERATOR_SCHEMA
            profile = perf_parser.parse(verdict, attempt.db, attempt.device)
            values["profile"] = attempt.tool("performance_parser", {"evaluation_id": verdict.evaluation_id},
                                             perf_parser.render(profile))
            values["memory"] = memory.render("accelerator")
        elif not verdict.compiled:
            role, template, schema = "debugger", f"debugger-compile.{mode.name}", DEBUGGER_SCHEMA
            values["errors"] = self._errors(attempt, mode, index, candidate, verdict)
        else:
            role, template, schema = "debugger", f"debugger-wrong.{mode.name}", DEBUGGER_SCHEMA
            values["verdict"] = f"{verdict.verdict}: {verdict.reason}"
            view = model_parser.parse(attempt.task, self.settings, verdict)
            if mode.name == "scaffolded":  # the scaffold owns MNN's side; the model needs the node and the mismatch
                view = {k: view[k] for k in ("onnx", "mismatch") if k in view}
            shown = model_parser.render(view) + (f"\n{verdict.details}" if verdict.details else "")
            values["model"] = attempt.tool("model_parser", {"verdict": verdict.verdict}, shown)
        fmt = FORMATS[role]
        if self.tree:
            schema = {**schema, "properties": {**schema["properties"], "lookups": LOOKUPS}}
            fmt = fmt[:-1] + ', "lookups": []}'
        messages = prompts.render(template, **values, answer_format=fmt)
        answer = attempt.ask(role, messages, seed=round_, max_tokens=PLAN_TOKENS, json_schema=schema)
        if answer is None:
            return role, None
        plan = parse_plan(answer.text)
        if role == "accelerator" and memory.already_tried(plan.get("method", "")):  # never the same method twice
            note = f"\n\"{plan.get('method')}\" was already tried: choose another method."
            retry = messages[:-1] + [Message("user", messages[-1].content + note)]
            again = attempt.ask(role, retry, seed=round_ + 1000, max_tokens=PLAN_TOKENS, json_schema=schema)
            plan = parse_plan(again.text) if again is not None else plan
        return role, plan

    def _errors(self, attempt: Attempt, mode, index, candidate: Candidate, verdict) -> str:
        """What the Debugger sees of a failed build: the Error Extractor's dictionary, or the raw log (ablation)."""
        log = verdict.compiler_output or verdict.reason
        if not self.errors:
            return "```\n" + log[: 3000 if mode.name == "whole-file" else 1500] + "\n```"
        report = error_extractor.extract(log, candidate.source or candidate.code or "", index if self.tree else None,
                                         candidate.region)
        text = report.render(limit=4) if mode.name == "whole-file" else report.render(first_only=True)
        return attempt.tool("error_extractor", {"errors": report.count(), "tree": self.tree}, text)

    # ------------------------------------------------------------ the Coder

    def _revise(self, attempt: Attempt, mode, index, candidate: Candidate, plan: dict, round_: int):
        """The Coder applies a plan to the code (fresh context) and the judge rules; None when the budget is spent."""
        found = []
        if self.tree:
            for query in [q for q in plan.get("lookups", []) if isinstance(q, str) and q.strip()][:3]:
                found.append((query, attempt.tool("tree.lookup", {"query": query}, index.describe(query, max_lines=20))))
        messages = prompts.render(f"coder-revise.{mode.name}", **mode.base(), code=candidate.code or "(no code yet)",
                                  feedback=feedback(plan, found))
        answer = attempt.ask("coder", messages, seed=round_, max_tokens=mode.max_tokens, identifiers=mode.identifiers)
        if answer is None:
            return None
        return self._fixed(attempt, mode, attempt.judge(mode.candidate(answer.text), origin={"round": round_}))

    def _fixed(self, attempt: Attempt, mode, verdict):
        """After a failed build: the compiler's fix-its applied to the model's code and judged (the
        verdict to go on with), or the verdict as it was when there are none."""
        if verdict is None or verdict.compiled or not self.fixits:
            return verdict
        fixed, applied = compiler_fixits.fix(attempt.candidates[-1], verdict.compiler_output, mode)
        if fixed is None:
            return verdict
        attempt.tool("compiler_fixits", {"edits": len(applied)}, "\n".join(applied))
        return attempt.judge(fixed, origin={"fixits": len(applied)})


Moka = MoKA  # the name run.py's generator table imports


def parse_plan(text: str) -> dict:
    """A planner's JSON answer; a broken one becomes its text as the diagnosis."""
    start, end = text.find("{"), text.rfind("}")
    if start >= 0 and end > start:
        try:
            value = json.loads(text[start:end + 1])
            if isinstance(value, dict):
                return value
        except json.JSONDecodeError:
            pass
    return {"diagnosis": re.sub(r"\s+", " ", text).strip()[:600], "suggestions": []}


def feedback(plan: dict, found: list[tuple[str, str]]) -> str:
    """The plan as the Coder reads it, with the MNN declarations the planner asked for."""
    lines = []
    if "method" in plan:
        lines.append(f"The optimisation to apply (keep the results exactly the same):\n- bottleneck: {plan.get('bottleneck', '')}"
                     f"\n- method: {plan.get('method', '')}\n- plan: {plan.get('plan', '')}")
        if re.search(r"simd|vector|intrinsic|avx|neon|sse", json.dumps(plan).lower()):
            lines.append(prompts.text("note.simd"))
    else:
        lines.append(f"The Debugger's diagnosis: {plan.get('diagnosis', '')}")
        for n, suggestion in enumerate(plan.get("suggestions", []) or [], 1):
            if isinstance(suggestion, dict):
                lines.append(f"{n}. ({suggestion.get('kind', 'local')}) {suggestion.get('fix', '')}")
    if found:
        lines.append("MNN declarations you asked for:\n```cpp\n" + "\n\n".join(f"// {q}\n{r}" for q, r in found) + "\n```")
    return "\n".join(lines)


def _outcome(verdict) -> str:
    if verdict.correct:
        return f"correct, {verdict.speedup:.2f}x native" if verdict.speedup is not None else "correct"
    return f"{verdict.verdict}: {verdict.reason[:100]}"
