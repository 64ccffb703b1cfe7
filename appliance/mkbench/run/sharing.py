"""What the workers of one run share: the machine (host measurements take it alone), a device
(one evaluation at a time), the loaded model, and the log of model calls.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from ..devices import Device
from ..llm.chat import Recorder

class MachineLock:
    """Readers: work that loads this machine (LLM calls, items for other devices). Writer: a
    measurement on the host. Writers go first once waiting; a thread may re-enter as a reader."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer or self._writers_waiting:
                    self._cond.wait()
                self._readers += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                with self._cond:
                    self._readers -= 1
                    self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_exclusive(self) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


class WorkerDevice:
    """A device as one worker sees it: `worker` names its build folder, and one evaluation at a
    time holds the device (from `workdir`, which opens an evaluation's device work, to `remove`,
    which ends it; the worker closes it in any case when the item ends)."""

    def __init__(self, device: Device, worker: str, evaluation_lock: threading.Lock, machine: MachineLock | None):
        self._device = device
        self.worker = worker
        self._evaluation_lock = evaluation_lock
        self._machine = machine  # set for the host: its measurements take the machine
        self._holding = False

    def __getattr__(self, name: str):
        return getattr(self._device, name)

    def __repr__(self) -> str:
        return f"WorkerDevice({self._device!r}, worker={self.worker!r})"

    def workdir(self, run_name: str) -> str:
        if not self._holding:
            self._evaluation_lock.acquire()
            if self._machine is not None:
                self._machine.acquire_exclusive()
            self._holding = True
        try:
            return self._device.workdir(run_name)
        except BaseException:
            self.release()
            raise

    def remove(self, remote: str) -> None:
        try:
            self._device.remove(remote)
        finally:
            self.release()

    def release(self) -> None:
        """End this worker's hold on the device (and on the machine, for the host)."""
        if self._holding:
            self._holding = False
            if self._machine is not None:
                self._machine.release_exclusive()
            self._evaluation_lock.release()


class SharedBackend:
    """One loaded model for every worker: calls take turns, and wait while the host measures."""

    def __init__(self, backend, machine: MachineLock):
        self._backend = backend
        self._machine = machine
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def count_prompt_tokens(self, messages):
        with self._lock:
            return self._backend.count_prompt_tokens(messages)

    def generate(self, request):
        with self._machine.shared(), self._lock:
            return self._backend.generate(request)

    def close(self) -> None:
        """The run closes the real backend when every worker is done."""


@dataclass(frozen=True)
class CallLog(Recorder):
    """A Recorder that also remembers the ids of the calls it wrote (through every bound copy)."""

    calls: list = field(default_factory=list, compare=False, repr=False)

    def bound(self, attempt_id: int | None = None, role: str | None = None) -> "CallLog":
        return CallLog(db=self.db, attempt_id=attempt_id, role=role, calls=self.calls)

    def record(self, completion) -> int:
        call_id = super().record(completion)
        self.calls.append(call_id)
        return call_id


def slug(text: str) -> str:
    """A name safe in a file name (a device serial such as 127.0.0.1:5599)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
