"""One evaluation's files on one device, and its runs: what evaluate() (native against candidate)
and selftest (native against native) share.

Every run has the same shape (mnn/runner/runner.cpp): the runner goes round the timed input sets
for W warm-up runs, then N timed runs (or until the guard stops it), then runs every other set once,
and writes every set's outputs. It runs under the guard (mnn/runner/guard.cpp), which times the
timed runs from outside the process, stops the run at its deadline and kills whatever it left behind; on the host and under qemu the guard runs inside the candidate
jail (sandbox.py), with only the run's own output folder writable. Each run gets a fresh output
folder; each evaluation a fresh working folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..devices import Device, DeviceLost, RunResult, fingerprint
from ..mnn.runner import runner_argv
from .sets import EvaluationSets

HOT_CELSIUS = fingerprint.HOT_CELSIUS  # above this (any thermal zone) a phone cools down before the next run
COOL_DOWN_SECONDS = 120.0  # the longest wait for it
HOST_GRACE = 30.0  # seconds the host waits beyond a run's deadline for the guard's report
UNTIL_STOPPED_MOST = 10_000_000  # timed iterations a run stopped by the guard may do at most


class HarnessError(RuntimeError):
    """The judge itself could not do its work (native MNN failed, a file the harness wrote is missing):
    a fault of the harness, never a verdict on the candidate. A run records it as a failed attempt."""


def target_of(device: Device) -> str:
    """The build target that runs on a device."""
    return "host" if device.abi == "x86_64" else "arm64"


@dataclass(frozen=True)
class Run:
    """One guarded run of one side."""

    label: str  # native | candidate (selftest: a | b)
    index: int
    seed: int  # the perturbation seed: runs with the same seed, warmup and iterations see the same inputs
    warmup: int
    iterations: int
    result: RunResult  # how it ended, as the guard saw it; seconds = the guard's wall time
    leftover: int  # processes it left behind (killed by the guard)
    report: dict | None  # the runner's report.json (its own clock: trusted for native only)
    out: str  # the run's output folder on the device: <set>/<output>.npy (see DeviceSession.outputs)
    device_state: dict = field(default_factory=dict)
    guarded: bool = True  # False: the guard's report is missing (the guard was killed, or the run outlived the grace)
    marks_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)  # when the guard saw warm-up, timed runs and their end begin
    throttled: str = ""  # why its recorded state says a phone ran it throttled (fingerprint.throttled); "" if not
    run_ms: float = 0.0  # the median time of a timed iteration by the guard's clock (guard.cpp's samples); 0: too few
    runs_seen: int = 0  # timed iterations the guard saw counted

    @property
    def timed_ms(self) -> float:
        """The timed runs' time by the guard's clock: from mark 2 to mark 3."""
        return self.marks_ms[2] - self.marks_ms[1]

    @property
    def outside_ms(self) -> float:
        """The run's time before its warm-up and after its timed runs, by the guard's clock."""
        return self.marks_ms[0] + (self.wall_ms - self.marks_ms[2])

    @property
    def wall_ms(self) -> float:
        return self.result.seconds * 1000.0

    @property
    def times_ms(self) -> list[float]:
        """The runner's own times of its timed iterations (its clock: trusted for native only)."""
        return list((self.report or {}).get("times_ms", []))

    @property
    def self_timed_ms(self) -> float:
        """The sum of the runner's own times of its warm-up and timed iterations."""
        report = self.report or {}
        return sum(report.get("times_ms", [])) + sum(report.get("warmup_ms", []))

    @property
    def loop_ms(self) -> float:
        """The runner's own time of its whole loop: iterations, and changing inputs between them."""
        return float((self.report or {}).get("loop_ms", self.self_timed_ms))

    def failure(self) -> tuple[str, str] | None:
        """(verdict, reason) for a run that did not finish cleanly, else None."""
        result, side = self.result, self.label
        if not self.guarded and not result.timed_out:
            last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
            return "crash", f"the {side} run ended without the guard's report (the guard was killed){': ' + last[:200] if last else ''}"
        if result.timed_out:
            return "timeout", f"the {side} run did not return within its deadline ({result.seconds:.0f} s)"
        if result.signal:
            return "crash", f"the {side} run was killed by signal {result.signal}"
        if result.exit_code != 0:
            last = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or [""])[-1]
            return "crash", f"the {side} runner exited with {result.exit_code}: {last[:200]}"
        if self.report is None:
            return "crash", f"the {side} run wrote no report (deleted or never written)"
        if not _report_fits(self.report, self.warmup, self.wall_ms):
            return "crash", f"the {side} run's report does not fit the run it describes (altered)"
        return None

    def loop_failure(self, stop_after: float | None) -> tuple[str, str] | None:
        """For a timing run: (verdict, reason) when the guard did not see its loop as the runner
        marks it, or saw it end before the guard's stop flag (runs stopped by the guard)."""
        first, timed, end = self.marks_ms
        if not 0 < first <= timed < end <= self.wall_ms:
            return "crash", f"the {self.label} run's loop was not seen by the guard as the runner marks it (altered)"
        if self.runs_seen != self.iterations:
            return "crash", (f"the {self.label} run's report says {self.iterations} timed iterations, the guard counted "
                             f"{self.runs_seen} (altered)")
        if stop_after is not None and self.timed_ms < stop_after * 1000.0 * 0.999 - 1.0:
            return "crash", (f"the {self.label} run's timed loop ended after {self.timed_ms:.1f} ms, before the guard "
                             f"stopped it at {stop_after * 1000.0:.1f} ms (altered)")
        return None


def _report_fits(report: dict, warmup: int, wall_ms: float) -> bool:
    """A report whose times and counts could describe the run: as many warm-up times as asked,
    at least one timed, every time a finite non-negative number, the loop no longer than the run."""
    times, warmups, loop, count = (report.get(k) for k in ("times_ms", "warmup_ms", "loop_ms", "iterations"))
    numbers = lambda values: isinstance(values, list) and all(  # noqa: E731
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf") for v in values)
    if not (numbers(times) and numbers(warmups) and isinstance(count, int) and not isinstance(count, bool)):
        return False
    if not isinstance(loop, (int, float)) or isinstance(loop, bool) or not 0 <= loop <= wall_ms:
        return False
    return count == len(times) >= 1 and len(warmups) == warmup and sum(times) + sum(warmups) <= loop * 1.001 + 0.01


class DeviceSession:
    """One evaluation's runners, guard, models and input sets pushed once to a fresh folder; runs numbered."""

    def __init__(self, device: Device, guard: Path, runners: dict[str, Path], models: dict[str, Path],
                 sets: EvaluationSets, config: dict, name: str, local: Path):
        """runners and models: one per label (sides may share a runner or a model file)."""
        self.device, self.sets, self.config, self.local = device, sets, config, local
        self.workdir = device.workdir(name)
        self.counter: dict[str, int] = {}
        device.push(guard, f"{self.workdir}/guard")
        self.runners, self.models = {}, {}
        pushed: dict[Path, str] = {}  # a file two labels share travels once
        for label, path in runners.items():
            self.runners[label] = pushed.get(Path(path)) or pushed.setdefault(Path(path), f"{self.workdir}/{label}_runner")
            if self.runners[label].endswith(f"/{label}_runner"):
                device.push(path, self.runners[label])
        for label, path in models.items():
            self.models[label] = pushed.get(Path(path)) or pushed.setdefault(Path(path), f"{self.workdir}/{label}.mnn")
            if self.models[label].endswith(f"/{label}.mnn"):
                device.push(path, self.models[label])
        device.push(sets.folder, f"{self.workdir}/sets")
        self.pulled: dict[str, Path] = {}

    def run(self, label: str, warmup: int, seed: int, deadline: float, iterations: int | None = None,
            stop_after: float | None = None, every_set: bool = True, extra: int = 32) -> Run:
        """Run one side under the guard on every set (a correctness run) or the timed sets only (a
        timing run): N timed iterations, or (stop_after, seconds) as many as fit before the guard
        raises its stop flag, `stop_after` seconds after the timed runs begin, and then up to
        `extra` - 1 more (the guard draws how many); pull the runner's report and the guard's
        (outputs when asked: `outputs`)."""
        index = self.counter.get(label, 0)
        self.counter[label] = index + 1
        out = f"{self.workdir}/out-{label}-{index}"
        sets = f"{self.workdir}/sets/{'all' if every_set else 'timed'}"
        stop = [] if stop_after is None else ["--stop-after", f"{stop_after:.4f}", "--extra", str(max(1, extra))]
        argv = [f"{self.workdir}/guard", "--report", f"{out}/guard.json", "--deadline", f"{deadline:.3f}", *stop, "--",
                *runner_argv(self.runners[label], self.models[label], sets, out, warmup, iterations,
                             len(self.sets.timed), seed, self.config, until_stopped=None if stop_after is None else UNTIL_STOPPED_MOST)]
        before = self.cool_down()
        started = time.monotonic()
        outer = self.device.run(argv, cwd=self.workdir, timeout=deadline + HOST_GRACE, writable=[out])
        after = self.device.read_state()
        target = self.local / f"{label}-{index}"
        guard, report = (self._pull_json(f"{out}/{name}", target / name) for name in ("guard.json", "report.json"))
        state = {"before": before, "after": after}
        if guard is None:  # the guard never reported: the run outlived the host's grace, or the guard was killed
            result = RunResult(None, outer.stdout, outer.stderr, time.monotonic() - started, outer.timed_out, None)
            return Run(label, index, seed, warmup, iterations or 0, result, 0, None, out, state, guarded=False)
        result = RunResult(guard["exit_code"], outer.stdout, outer.stderr, guard["wall_ns"] / 1e9, guard["timed_out"],
                           guard["signal"])
        report = report if result.exit_code == 0 else None
        done = (report or {}).get("iterations", iterations or 0)
        marks = guard.get("marks_ns") or [0, 0, 0]
        return Run(label, index, seed, warmup, done if isinstance(done, int) else -1, result, int(guard.get("leftover", 0)),
                   report, out, state, marks_ms=tuple(m / 1e6 for m in marks[:3]), throttled=self.throttled(state),
                   run_ms=float(guard.get("run_ns") or 0) / 1e6, runs_seen=int(guard.get("runs_seen") or 0))

    def throttled(self, state: dict) -> str:
        """A phone's run taken while throttled (its locked clocks dropped, or it ran hot); never on
        the host or under emulation, whose clocks mkbench does not manage."""
        fp = self.device.fingerprint()
        if self.device.emulated or not fp.get("sdk"):
            return ""
        return fingerprint.throttled(state, fp.get("clocks"))

    def outputs(self, run: Run, set_name: str) -> Path:
        """A set's outputs of a run, pulled from the device once (only what is checked travels)."""
        key = f"{run.out}/{set_name}"
        if key not in self.pulled:
            target = self.local / f"{run.label}-{run.index}" / set_name
            try:
                self.device.pull(key, target)
            except FileNotFoundError:
                target.mkdir(parents=True, exist_ok=True)  # no outputs at all: judged missing
            self.pulled[key] = target
        return self.pulled[key]

    def _pull_json(self, remote: str, local: Path) -> dict | None:
        try:
            self.device.pull(remote, local)
        except FileNotFoundError:
            return None
        return _json(local)

    def cool_down(self) -> dict:
        """Wait while the device is hot (TVM's habit: phones throttle near 90 °C); returns
        the state the run starts from."""
        waited = 0.0
        state = self.device.read_state()
        phone = bool(self.device.fingerprint().get("sdk")) and not self.device.emulated
        while phone and _hottest(state) >= HOT_CELSIUS and waited < COOL_DOWN_SECONDS:
            time.sleep(5.0)
            waited += 5.0
            state = self.device.read_state()
        if waited:
            state = {**state, "cooled_down_seconds": waited}
        return state

    def close(self) -> None:
        try:
            self.device.remove(self.workdir)
        except DeviceLost:
            raise
        except Exception:
            pass


def _json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _hottest(state: dict) -> float:
    temperatures = [t for t in (state.get("temperatures_c") or {}).values() if isinstance(t, (int, float))]
    return max(temperatures, default=0.0)
