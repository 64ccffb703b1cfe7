"""The planners' shared memory: every plan of an attempt and what came of it.

The Debugger and the Accelerator read it so a failed path is not taken twice, and the
Accelerator never proposes a method it already tried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    round: int
    role: str  # debugger | accelerator
    plan: dict  # the planner's JSON
    outcome: str = ""  # the verdict of the code made from it, e.g. "correct, 1.42x" or "compile-error: ..."


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass
class Memory:
    entries: list[Entry] = field(default_factory=list)

    def add(self, round_: int, role: str, plan: dict) -> None:
        self.entries.append(Entry(round_, role, dict(plan)))

    def settle(self, outcome: str) -> None:
        """Record what the latest plan led to."""
        if self.entries and not self.entries[-1].outcome:
            last = self.entries[-1]
            self.entries[-1] = Entry(last.round, last.role, last.plan, outcome)

    def methods_tried(self) -> list[str]:
        return [e.plan.get("method", "") for e in self.entries if e.role == "accelerator" and e.plan.get("method")]

    def already_tried(self, method: str) -> bool:
        """Whether an optimisation method (by its words) was already proposed in this attempt."""
        wanted = _normal(method)
        return bool(wanted) and any(_normal(m) == wanted for m in self.methods_tried())

    def render(self, role: str | None = None, last: int = 6) -> str:
        """The history as short lines for a prompt ("none yet" when empty)."""
        entries = [e for e in self.entries if role is None or e.role == role][-last:]
        if not entries:
            return "none yet"
        lines = []
        for e in entries:
            if e.role == "accelerator":
                what = f"bottleneck: {e.plan.get('bottleneck', '')}; method: {e.plan.get('method', '')}"
            else:
                what = e.plan.get("diagnosis", "") or "; ".join(s.get("fix", "") for s in e.plan.get("suggestions", []))
            lines.append(f"- round {e.round} ({e.role}): {what[:200]} -> {e.outcome or 'pending'}")
        return "\n".join(lines)

    def to_list(self) -> list[dict]:
        return [{"round": e.round, "role": e.role, "plan": e.plan, "outcome": e.outcome} for e in self.entries]
