"""Progress of a run on the terminal: a live bar per stage, or one plain line per event."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from .plan import RunSummary, WorkItem

@dataclass(frozen=True)
class ItemDone:
    """What progress shows about one finished item."""

    item: WorkItem
    device: str  # serial that did it
    status: str  # finished | failed
    line: str  # verdict and speed, or the error
    seconds: float


class Progress:
    """Plain-text progress: one line per event (quiet, or not a terminal), or a live bar per stage.

    A stage is one generator (and mode) on one slot: its items, how many are done, and an ETA
    from this session's pace.
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = (not quiet) and (self.stream.isatty() if live is None else live)
        self._lock = threading.Lock()
        self._stages: dict[str, dict[str, Any]] = {}
        self._drawn = 0

    @staticmethod
    def stage_of(item: WorkItem, modes: int = 1) -> str:
        return f"{item.generator}{'/' + item.mode if modes > 1 else ''} @ {item.slot}"

    def begin(self, run_id: str, stages: dict[str, tuple[int, int]], workers: dict[str, int]) -> None:
        """stages: name -> (items, already finished); workers: name -> workers serving it."""
        with self._lock:
            for name, (total, done) in stages.items():
                self._stages[name] = {"total": total, "done": done, "ok": 0, "bad": 0, "failed": 0,
                                      "seconds": [], "workers": workers.get(name, 1)}
            remaining = sum(t - d for t, d in stages.values())
            self._say(f"run {run_id}: {sum(t for t, _ in stages.values())} items, {remaining} to do")
            self._draw()

    def note(self, text: str) -> None:
        with self._lock:
            self._say(text)
            self._draw()

    def item(self, stage: str, done: ItemDone) -> None:
        with self._lock:
            s = self._stages[stage]
            s["done"] += 1
            s["seconds"].append(done.seconds)
            key = "failed" if done.status == "failed" else ("ok" if done.line.startswith("correct") else "bad")
            s[key] += 1
            if not self.live:
                self._say(f"[{s['done']}/{s['total']}] {stage}: {done.item.task} on {done.device}: {done.line} "
                          f"({done.seconds:.0f} s){self._eta(s)}")
            self._draw()

    def end(self, summary: RunSummary) -> None:
        with self._lock:
            self._draw(final=True)
            self._say(f"run {summary.run_id} {summary.status}: {summary.finished}/{summary.planned} items finished, "
                      f"{summary.failed} failed, {summary.pending} pending, {summary.done_now} done now in "
                      f"{_duration(summary.seconds)}" + (f"; {summary.message}" if summary.message else ""))

    def _eta(self, s: dict) -> str:
        left = s["total"] - s["done"]
        if not left or not s["seconds"]:
            return ""
        pace = sum(s["seconds"]) / len(s["seconds"]) / max(1, s["workers"])
        return f", ETA {_duration(left * pace)}"

    def _say(self, text: str) -> None:
        self._erase()
        self.stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.stream.flush()

    def _erase(self) -> None:
        if self.live and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, final: bool = False) -> None:
        if not self.live:
            return
        self._erase()
        width = max((len(n) for n in self._stages), default=0)
        for name, s in self._stages.items():
            filled = int(20 * s["done"] / max(1, s["total"]))
            self.stream.write(f"{name:<{width}} [{'#' * filled}{'.' * (20 - filled)}] {s['done']:>4}/{s['total']:<4} "
                              f"correct {s['ok']} · other {s['bad']} · failed {s['failed']}{self._eta(s)}\n")
        self._drawn = 0 if final else len(self._stages)
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
