"""One line of `mkbench doctor`: the shared type every module's own checks return."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """What was found for one requirement, or how to get it."""

    name: str
    ok: bool
    detail: str  # what was found, or how to get it
