"""Pending items per slot and items in flight; workers block here until their slot is done."""

from __future__ import annotations

import threading
from collections import Counter, deque

from .plan import WorkItem

class WorkQueue:
    """Pending items per slot and items in flight; workers block here until their slot is done."""

    def __init__(self, items: list[WorkItem], slots: list[str]):
        self._cond = threading.Condition()
        self._pending: dict[str, deque[WorkItem]] = {slot: deque() for slot in slots}
        for item in items:
            self._pending[item.slot].append(item)
        self._in_flight: Counter[str] = Counter()
        self._serving: Counter[str] = Counter()  # workers with a device at hand, per slot
        self.stopping = False

    def serving(self, slot: str, change: int) -> None:
        """A worker starts (+1) or stops (-1) serving a slot: its device is there, or lost."""
        with self._cond:
            self._serving[slot] += change
            self._cond.notify_all()

    def take(self, slot: str) -> WorkItem | None:
        """The next item of a slot; None when the slot is done or the run stops."""
        with self._cond:
            while True:
                if self.stopping:
                    return None
                if self._pending[slot]:
                    self._in_flight[slot] += 1
                    return self._pending[slot].popleft()
                if not self._in_flight[slot]:
                    return None
                self._cond.wait(1.0)  # an item in flight may come back (its device lost)

    def done(self, item: WorkItem) -> None:
        with self._cond:
            self._in_flight[item.slot] -= 1
            self._cond.notify_all()

    def give_back(self, item: WorkItem) -> None:
        with self._cond:
            self._in_flight[item.slot] -= 1
            self._pending[item.slot].appendleft(item)
            self._cond.notify_all()

    def slot_done(self, slot: str) -> bool:
        with self._cond:
            return not self._pending[slot] and not self._in_flight[slot]

    def quiet_but(self, slot: str) -> bool:
        """Nothing in flight, and no other slot with a device at hand has work left: waiting for this
        slot's device is all that is left to do."""
        with self._cond:
            return not any(self._in_flight.values()) and not any(
                q for s, q in self._pending.items() if s != slot and self._serving[s] > 0)

    def stop(self) -> None:
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._pending.values())
