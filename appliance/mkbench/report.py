"""The paper's metrics for a run, as a terminal table, Markdown, PNG plots and CSV.

Everything is read from the database, so a report is rebuilt without re-running anything; and
from a run's export alone, so anyone can check published figures without the database:

    report = build_report(db, run_id)       # metrics per generator, per category, per device
    print(format_table(report))             # or to_markdown(report); plot(report, folder)
    export_csv(db, run_id, folder)          # RUN-attempts.csv, RUN-llm_calls.csv (columns below), RUN-run.json
    report = report_from_export(folder)     # the same metrics from those files (`mkbench report --from FOLDER`)

Definitions (an item is one generator's attempt at one task on one device; the denominator is
every item the run planned, so a task never attempted counts as a failure, as in the paper):
- CSR: share of items whose best kernel compiled. FCR: share whose best kernel is correct.
- FCR strict: the same, counting only kernels that also pass the scale-aware check (error within
  10x native MNN's own on the same draws, judge/evaluate.py).
- fast_p: share of items, on devices whose timings are reportable (not emulated), whose best
  kernel is correct, kept in the wins (not `blocked`: no review flag that puts its timing or
  behaviour in doubt, and it passes the scale-aware check), and more than p times as fast as native
  MNN: the lower bound of its speedup's 95% interval exceeds p. A speedup whose interval overlaps
  the device's noise floor for the task (native against itself, measured by the evaluation, or by
  `mkbench selftest`) is parity: it counts as 1.0, never as a win. `flagged` counts the correct
  items kept out of the wins.
- pass@1 and pass@k: the unbiased estimator (Chen et al., 2021) over the candidates an attempt
  judged (n per attempt, c correct), averaged over items; an attempt with n < k counts as pass@n.
  k is the most candidates any of the generator's attempts judged.
- geomean: geometric mean of the (parity-adjusted) speedups of correct, timed kernels kept in the wins.
- cost: mean LLM calls, tokens (prompt + completion) and wall seconds per finished attempt.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .store import rows as store_rows

DEFAULT_PS = (0.5, 1.0, 1.5)
OVERALL = "*"  # the task name of a device's overall noise floor


# ---------------------------------------------------------------- noise floors


def store_noise_floors(db, device, floors: Iterable, tasks: dict | None = None, settings=None) -> list[int]:
    """Store what `mkbench selftest` measured (judge.selftest.NoiseFloor) under the device's id,
    keyed like the floors evaluations measure (task version and judge settings) when the tasks and
    settings are given, so an evaluation reuses them."""
    from .devices import store_device
    from .judge.evaluate import judge_config, settings_key

    key = store_device(db, device)
    ids = []
    for floor in floors:
        task = (tasks or {}).get(floor.task)
        judge_key = settings_key(judge_config(task, settings)) if task is not None and settings is not None else None
        ids.append(store_rows.record_noise_floor(db, key, floor.task, floor.low, floor.high, settings_key=judge_key,
                                                 task_sha256=task.sha256 if task is not None else None,
                                                 speedup=floor.speedup, ratios=getattr(floor, "ratios", None)))
    return ids


def noise_floors(db, device_id: str) -> dict[str, tuple[float, float]]:
    """A device's floors by task (newest per task); "*" is its overall floor: the stored one, else
    the widest of its task floors (a task without its own floor gets the conservative band)."""
    floors: dict[str, tuple[float, float]] = {}
    for row in db.query("SELECT task, low, high FROM noise_floors WHERE device_id = ? ORDER BY created_at, id", [device_id]):
        floors[row["task"]] = (row["low"], row["high"])
    tasks = [v for k, v in floors.items() if k != OVERALL]
    if OVERALL not in floors and tasks:
        floors[OVERALL] = (min(low for low, _ in tasks), max(high for _, high in tasks))
    return floors


def noise_floor(db, device_id: str, task: str) -> tuple[float, float] | None:
    """The band inside which a speedup of this task on this device is parity; None if never measured."""
    floors = noise_floors(db, device_id)
    return floors.get(task) or floors.get(OVERALL)


# ---------------------------------------------------------------- one item's outcome


@dataclass(frozen=True)
class Outcome:
    """One work item as the report sees it: its best kernel, its cost, and how its speed counts."""

    task: str
    category: str
    kind: str | None
    generator: str
    mode: str
    slot: str
    device: str  # serial ("" when a pooled item was never attempted)
    device_id: str | None
    reportable: bool  # the device's timings are real (not emulated)
    status: str  # finished | failed | missing
    attempt_id: int | None = None
    verdict: str | None = None
    compiled: bool = False
    correct: bool = False
    speedup: float | None = None  # as measured (None: not timed, or not reportable)
    floor: tuple[float, float] | None = None
    interval: tuple[float, float] | None = None  # the speedup's 95% interval (None: an older judge's figure)
    blocked: bool = False  # correct but kept out of the wins (a blocking flag, or the scale-aware check failed)
    strict: bool = False  # correct by the scale-aware check too
    candidates: int = 0
    correct_candidates: int = 0
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def parity(self) -> bool:
        """Correct, timed, and its interval overlaps the noise floor: as fast as native, within the noise."""
        if not self.timed or self.floor is None:
            return False
        low, high = self.interval or (self.speedup, self.speedup)
        return low <= self.floor[1] and high >= self.floor[0]

    @property
    def timed(self) -> bool:
        """Correct, timed on a real device, and kept in the wins: its speed counts."""
        return self.correct and self.reportable and self.speedup is not None and not self.blocked

    @property
    def effective_speedup(self) -> float | None:
        """The speedup as the metrics count it: 1.0 at parity."""
        if not self.timed:
            return None
        return 1.0 if self.parity else self.speedup

    def faster_than(self, p: float) -> bool:
        """Counts for fast_p: at parity 1.0 > p; otherwise its interval's lower bound (or, for an
        older judge's figure without one, the speedup) exceeds p."""
        if not self.timed:
            return False
        if self.parity:
            return 1.0 > p
        return (self.interval[0] if self.interval else self.speedup) > p


@dataclass(frozen=True)
class RunData:
    """A run's planned items joined with their attempts, evaluations, devices and floors."""

    run_id: str
    created_at: float
    status: str
    config: dict
    provenance: dict
    outcomes: tuple[Outcome, ...]
    attempts: tuple[dict, ...]  # every attempt row of the run, with its evaluation and outcome fields
    devices: dict[str, dict]  # serial -> {device_id, emulated, slot, status}


def latest_run(db) -> str | None:
    """The newest run written by run-all."""
    row = db.conn.execute("SELECT id FROM runs WHERE config_key IS NOT NULL ORDER BY created_at DESC LIMIT 1").fetchone()
    return row[0] if row else None


def load_run(db, run_id: str) -> RunData:
    """Read everything the report and the export need about one run."""
    run = store_rows.run_row(db, run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r}: see `mkbench run list`")
    config, prov = store_rows.json_dict(run["config"]), store_rows.json_dict(run.get("provenance"))
    tasks = {t["name"]: t for t in config.get("tasks", [])}
    emulated = {r["id"]: bool(r["emulated"]) for r in db.query("SELECT id, emulated FROM devices")}
    devices, slot_of, serial_of = {}, {}, {}
    for r in db.query("SELECT serial, slot, device_id, status FROM run_devices WHERE run_id = ? ORDER BY rowid", [run_id]):
        devices[r["serial"]] = {"device_id": r["device_id"], "emulated": emulated.get(r["device_id"], False),
                                "slot": r["slot"], "status": r["status"]}
        slot_of[r["device_id"]] = r["slot"]
        serial_of[r["device_id"]] = r["serial"]
    floors = {r["device_id"]: noise_floors(db, r["device_id"]) for r in devices.values() if r["device_id"]}

    attempts = []
    for a in db.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY created_at, id", [run_id]):
        evaluation = None
        if a["best_evaluation_id"] is not None:
            found = list(db.query("SELECT * FROM evaluations WHERE id = ?", [a["best_evaluation_id"]]))
            evaluation = found[0] if found else None
        device_floors = floors.get(a["device_id"]) or noise_floors(db, a["device_id"])
        floor = device_floors.get(a["task"]) or device_floors.get(OVERALL)
        task = tasks.get(a["task"], {})
        reportable = not emulated.get(a["device_id"], False)
        outcome = _outcome(a, evaluation, task, slot_of.get(a["device_id"], a["device_id"]),
                           serial_of.get(a["device_id"], a["device_id"]), reportable, floor)
        attempts.append({"row": a, "evaluation": evaluation, "outcome": outcome})

    outcomes = planned_items(config, devices, [entry["outcome"] for entry in attempts])
    return RunData(run_id, run["created_at"], run["status"], config, prov, outcomes, tuple(attempts), devices)


def planned_items(config: dict, devices: dict[str, dict], attempted: Iterable[Outcome]) -> tuple[Outcome, ...]:
    """Every item the run planned (task x device slot x generator x mode): its newest finished
    attempt, else its newest failed one, else a missing item."""
    tasks = {t["name"]: t for t in config.get("tasks", [])}
    chosen: dict[tuple, Outcome] = {}
    for o in attempted:
        if o.status not in ("finished", "failed"):
            continue  # an attempt still running, or cut short by a kill: the item is redone on resume
        key = (o.task, o.generator, o.mode, o.slot)
        if o.status == "finished" or chosen.get(key) is None or chosen[key].status != "finished":
            chosen[key] = o
    slots = list(dict.fromkeys(d["slot"] for d in devices.values()))
    outcomes = []
    for name in tasks:
        for slot in slots:
            for generator in config.get("run", {}).get("generators", []):
                for mode in config.get("run", {}).get("modes", []):
                    found = chosen.get((name, generator, mode, slot))
                    if found is None:
                        members = [(s, d) for s, d in devices.items() if d["slot"] == slot]
                        serial = members[0][0] if len(members) == 1 else ""
                        found = Outcome(name, tasks[name].get("category", "?"), tasks[name].get("kind"), generator, mode, slot,
                                        serial, members[0][1]["device_id"] if len(members) == 1 else None,
                                        any(not d["emulated"] for _, d in members), "missing")
                    outcomes.append(found)
    return tuple(outcomes)


def _outcome(a: dict, evaluation: dict | None, task: dict, slot: str, serial: str, reportable: bool,
             floor: tuple[float, float] | None) -> Outcome:
    summary = store_rows.json_dict(a["summary"])
    best = summary.get("best_verdict") or (summary.get("best") if isinstance(summary.get("best"), dict) else None) or {}
    interval, blocked, strict = None, False, False
    if evaluation is not None:
        verdict = evaluation["verdict"]
        compiled, correct = verdict != "compile-error", verdict == "correct"
        speedup = evaluation["speedup"] if evaluation["timing_reportable"] else None
        if evaluation.get("speedup_low") is not None and evaluation.get("timing_runs") is not None:
            interval = (evaluation["speedup_low"], evaluation["speedup_high"])
        if evaluation.get("noise_floor_low") is not None:
            floor = (evaluation["noise_floor_low"], evaluation["noise_floor_high"])  # the floor the evaluation measured
        blocked = bool(evaluation.get("blocked"))
        strict = correct and evaluation.get("strict_ok") != 0
    elif best:
        verdict, compiled, correct = best.get("verdict"), bool(best.get("compiled")), bool(best.get("correct"))
        speedup = best.get("speedup") if best.get("timing_reportable", True) else None
    else:
        verdict, compiled, correct, speedup = None, False, False, None
    candidates = summary.get("candidates")
    if isinstance(candidates, list) and candidates:
        n, c = len(candidates), sum(1 for v in candidates if v.get("correct"))
    else:
        n, c = (1, int(correct)) if verdict else (0, 0)
    return Outcome(
        task=a["task"], category=task.get("category", "?"), kind=task.get("kind"), generator=a["generator"], mode=a["mode"],
        slot=slot, device=serial, device_id=a["device_id"], reportable=reportable, status=a["status"], attempt_id=a["id"],
        verdict=verdict, compiled=compiled and a["status"] == "finished", correct=correct and a["status"] == "finished",
        speedup=speedup, floor=floor, interval=interval, blocked=blocked, strict=strict and a["status"] == "finished",
        candidates=n, correct_candidates=c, llm_calls=int(summary.get("llm_calls") or 0),
        tokens=int(summary.get("prompt_tokens") or 0) + int(summary.get("completion_tokens") or 0),
        seconds=float(summary.get("seconds") or 0.0))


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metrics:
    """The paper's metrics (and ours) over a group of items; shares are fractions in [0, 1]."""

    group: tuple[str, ...]
    items: int
    compiled: int
    correct: int
    csr: float
    fcr: float
    timed_items: int  # items on devices with reportable timings: fast_p's denominator
    fast: dict[float, float | None]  # p -> share (None: no reportable device)
    wins: int  # correct, timed, faster than native beyond the noise floor
    parity: int  # correct, timed, inside the noise floor
    geomean: float | None
    pass_1: float | None
    pass_k: float | None
    k: int
    calls_per_task: float | None
    tokens_per_task: float | None
    seconds_per_task: float | None
    fcr_strict: float = 0.0  # FCR counting only kernels that pass the scale-aware check too
    flagged: int = 0  # correct items kept out of the wins (blocking flags, or the scale-aware check)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one task with n samples of which c are correct (n < k: pass@n)."""
    if n <= 0:
        return 0.0
    if n < k:
        return 1.0 if c else 0.0
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def metrics(group: tuple[str, ...], outcomes: Iterable[Outcome], ps: Iterable[float] = DEFAULT_PS,
            k: int | None = None) -> Metrics:
    """The metrics of one group of items (k for pass@k: by default the most candidates an attempt judged)."""
    items = list(outcomes)
    total = len(items)
    compiled = sum(o.compiled for o in items)
    correct = sum(o.correct for o in items)
    eligible = [o for o in items if o.reportable]
    timed = [o for o in items if o.timed]
    fast = {p: (sum(1 for o in timed if o.faster_than(p)) / len(eligible) if eligible else None) for p in ps}
    speeds = [o.effective_speedup for o in timed]
    geomean = math.exp(sum(math.log(s) for s in speeds) / len(speeds)) if speeds else None
    judged = [o for o in items if o.status == "finished" and o.candidates]
    k = k or max((o.candidates for o in judged), default=1)
    attempted = [o for o in items if o.status != "missing"]
    pass_1 = sum(o.correct_candidates / o.candidates if o.candidates else 0.0 for o in attempted) / total if attempted else None
    pass_k = sum(pass_at_k(o.candidates, o.correct_candidates, k) for o in attempted) / total if attempted else None
    finished = [o for o in items if o.status == "finished"]

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return Metrics(
        group=group, items=total, compiled=compiled, correct=correct, csr=compiled / total if total else 0.0,
        fcr=correct / total if total else 0.0, timed_items=len(eligible), fast=fast,
        wins=sum(1 for o in timed if o.faster_than(1.0)), parity=sum(1 for o in timed if o.parity),
        fcr_strict=sum(o.strict for o in items) / total if total else 0.0,
        flagged=sum(1 for o in items if o.correct and o.blocked),
        geomean=geomean, pass_1=pass_1, pass_k=pass_k, k=k, calls_per_task=mean([o.llm_calls for o in finished]),
        tokens_per_task=mean([o.tokens for o in finished]), seconds_per_task=mean([o.seconds for o in finished]))


@dataclass(frozen=True)
class Report:
    """A run's metrics by generator, by generator and category, by generator and device."""

    run_id: str
    status: str
    ps: tuple[float, ...]
    by_generator: tuple[Metrics, ...]
    by_category: tuple[Metrics, ...]
    by_device: tuple[Metrics, ...]
    data: RunData
    notes: tuple[str, ...] = field(default_factory=tuple)


def build_report(db, run_id: str | None = None, ps: Iterable[float] = DEFAULT_PS) -> Report:
    """The metrics of a run (the newest if none is named)."""
    run_id = run_id or latest_run(db)
    if run_id is None:
        raise LookupError("no run in the database yet: start one with `mkbench run-all`")
    data = load_run(db, run_id)
    notes = []
    for serial, d in data.devices.items():
        if not d["emulated"] and d["device_id"] and not noise_floors(db, d["device_id"]):
            notes.append(f"{serial} has no noise floor: speedups are taken as measured (run `mkbench selftest {serial}`)")
    return report_of(data, ps, notes + recheck_notes(db, data))


def report_of(data: RunData, ps: Iterable[float] = DEFAULT_PS, notes: Iterable[str] = ()) -> Report:
    """The metrics of a run's items, with what a reader must know about them (`notes` first)."""
    run_id = data.run_id
    ps = tuple(sorted(set(float(p) for p in ps)))
    several_modes = len({o.mode for o in data.outcomes}) > 1

    def label(o: Outcome) -> str:
        return f"{o.generator} ({o.mode})" if several_modes else o.generator

    k_of: dict[str, int] = {}  # one k per generator, whatever the group
    for o in data.outcomes:
        if o.status == "finished":
            k_of[label(o)] = max(k_of.get(label(o), 1), o.candidates)

    def grouped(key) -> tuple[Metrics, ...]:
        groups: dict[tuple, list[Outcome]] = {}
        for o in data.outcomes:
            groups.setdefault(key(o), []).append(o)
        return tuple(metrics(g, v, ps, k_of.get(g[0], 1)) for g, v in groups.items())

    def device_label(o: Outcome) -> str:
        return o.device or f"({o.slot}, not attempted)"

    notes = list(notes)
    for serial, d in data.devices.items():
        if d["emulated"]:
            notes.append(f"{serial} is emulated: correctness only, its timings are not reported")
        if d["status"] == "lost":
            notes.append(f"{serial} was lost during the run")
    missing = sum(o.status == "missing" for o in data.outcomes)
    failed = sum(o.status == "failed" for o in data.outcomes)
    if missing or failed:
        notes.append(f"{missing} items not attempted and {failed} failed by a harness fault count as not compiled "
                     f"(`mkbench run resume {run_id}` completes them)")
    return Report(run_id, data.status, ps, grouped(lambda o: (label(o),)),
                  tuple(sorted(grouped(lambda o: (label(o), o.category)), key=lambda m: (m.group[1], m.group[0]))),
                  grouped(lambda o: (label(o), device_label(o))), data, tuple(notes))


def recheck_notes(db, data: RunData) -> list[str]:
    """One line per device the run's correct kernels were judged again on (`mkbench run recheck`):
    how many of them are correct there too, by generator and mode (one count per item)."""
    rechecked: dict[tuple[str, str], str] = {}  # (serial, candidate sha256) -> the newest verdict there
    for r in db.query("SELECT e.candidate_sha256, e.verdict, d.serial FROM evaluations e "
                      "JOIN devices d ON d.id = e.device_id WHERE e.run_id = ? ORDER BY e.id", [data.run_id]):
        if r["serial"] not in data.devices:  # not one of the run's own devices
            rechecked[(r["serial"], r["candidate_sha256"])] = r["verdict"]
    notes = []
    for serial in sorted({serial for serial, _ in rechecked}):
        counts: dict[str, list[int]] = {}
        for entry in data.attempts:
            evaluation = entry["evaluation"]
            verdict = rechecked.get((serial, evaluation["candidate_sha256"])) if evaluation and evaluation["verdict"] == "correct" else None
            if verdict is not None:
                count = counts.setdefault(f"{entry['row']['generator']} ({entry['row']['mode']})", [0, 0])
                count[0] += verdict == "correct"
                count[1] += 1
        notes.append(f"rechecked on {serial}: " + ", ".join(f"{label} {c}/{n}" for label, (c, n) in sorted(counts.items()))
                     + " of the correct kernels are correct there too")
    return notes


# ---------------------------------------------------------------- tables


def _columns(report: Report) -> list[str]:
    return (["items", "CSR", "FCR", "FCR strict"] + [f"fast_{p:.1f}" if round(p, 1) == p else f"fast_{p:g}" for p in report.ps]
            + ["pass@1", "pass@k", "geomean", "wins", "parity", "flagged", "calls/task", "tokens/task", "s/task"])


def _cells(m: Metrics, ps: tuple[float, ...]) -> list[str]:
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    def num(value: float | None, digits: int = 0) -> str:
        return "—" if value is None else f"{value:,.{digits}f}"

    return ([str(m.items), pct(m.csr), pct(m.fcr), pct(m.fcr_strict)] + [pct(m.fast[p]) for p in ps]
            + [pct(m.pass_1), f"{pct(m.pass_k)} (k={m.k})" if m.pass_k is not None else "—",
               "—" if m.geomean is None else f"{m.geomean:.2f}x", str(m.wins), str(m.parity), str(m.flagged),
               num(m.calls_per_task, 1), num(m.tokens_per_task), num(m.seconds_per_task)])


def tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for each table of the report; shares in %."""
    cols = _columns(report)
    return [
        ("By generator", ["generator"] + cols, [list(m.group) + _cells(m, report.ps) for m in report.by_generator]),
        ("By device", ["generator", "device"] + cols, [list(m.group) + _cells(m, report.ps) for m in report.by_device]),
        ("By category", ["generator", "category"] + cols, [list(m.group) + _cells(m, report.ps) for m in report.by_category]),
    ]


def format_table(report: Report) -> str:
    """The report as aligned plain-text tables for a terminal."""
    out = [f"run {report.run_id} ({report.status}): shares in % of items; fast_p counts parity (the interval overlaps the noise floor) as 1.0 and flagged kernels never"]
    for title, header, table_rows in tables(report):
        widths = [max(len(str(r[i])) for r in [header] + table_rows) for i in range(len(header))]
        out += ["", title]
        for row in [header] + table_rows:
            out.append("  ".join(str(c).ljust(w) if i < len(header) - len(_columns(report)) else str(c).rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    out += [""] + [f"note: {n}" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def to_markdown(report: Report, plots: Iterable[Path] = ()) -> str:
    """The report as Markdown: provenance, the three tables, notes and plots."""
    prov = report.data.provenance
    model = prov.get("model") or {}
    mnn = prov.get("mnn") or {}
    lines = [f"# mkbench run {report.run_id}", "",
             f"- status: {report.status}; mkbench {prov.get('mkbench_version', '?')}; "
             f"MNN {mnn.get('tag', '?')} ({str(mnn.get('commit', '?'))[:12]})",
             f"- suite: {prov.get('suite', {}).get('name', '?')} ({prov.get('suite', {}).get('tasks', '?')} tasks, "
             f"hash {str(prov.get('suite', {}).get('hash', '?'))[:12]})",
             f"- model: {model.get('model', '—')} ({model.get('backend', '—')}, sha256 {str(model.get('sha256') or '—')[:12]})",
             f"- devices: {', '.join(report.data.devices) or '—'}", "",
             "Shares are % of items (task × generator × device); fast_p counts an item when the lower bound of its "
             "speedup's 95% interval exceeds p, a speedup whose interval overlaps the device's noise floor as parity "
             "(1.0), and a flagged kernel (blocked: review flags, or the scale-aware check) never.", ""]
    for title, header, table_rows in tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows]
        lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    for path in plots:
        lines += [f"![{path.stem}]({path.name})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots


def plot(report: Report, folder: Path) -> tuple[list[Path], str]:
    """speedups.png (distribution per generator) and categories.png (metrics per category);
    returns the files and a one-line message (why plots were skipped, if they were)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install 'mkbench[report]')"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    generators = [m.group[0] for m in report.by_generator]
    several_modes = len({o.mode for o in report.data.outcomes}) > 1
    label_of = (lambda o: f"{o.generator} ({o.mode})") if several_modes else (lambda o: o.generator)

    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(generators) + 2), 4))
    speeds = [[o.effective_speedup for o in report.data.outcomes if label_of(o) == g and o.timed] for g in generators]
    if any(speeds):
        ax.boxplot([s or [float("nan")] for s in speeds], showfliers=False)
        for i, values in enumerate(speeds, start=1):
            ax.scatter([i + 0.08 * ((j % 5) - 2) for j in range(len(values))], values, s=14, alpha=0.6)
        ax.set_yscale("log")
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.yaxis.set_major_locator(LogLocator(base=2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    else:
        ax.text(0.5, 0.5, "no timed correct kernels", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(1, len(generators) + 1), generators)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel("speedup over native MNN (parity = 1.0)")
    ax.set_title(f"Speedups of correct kernels, run {report.run_id}", fontsize=9)
    fig.tight_layout()
    paths.append(folder / "speedups.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    categories = sorted({m.group[1] for m in report.by_category})
    shown = [("CSR", lambda m: m.csr), ("FCR", lambda m: m.fcr), ("fast_1.0", lambda m: m.fast.get(1.0))]
    fig, axes = plt.subplots(1, len(shown), figsize=(min(18, 3 + 0.5 * len(categories) * len(shown)), 3.8), sharey=True)
    width = 0.8 / max(1, len(generators))
    by_key = {m.group: m for m in report.by_category}
    for ax, (name, value) in zip(axes, shown):
        for gi, g in enumerate(generators):
            heights = [100 * (value(by_key[(g, c)]) or 0) if (g, c) in by_key else 0 for c in categories]
            ax.bar([ci + gi * width for ci in range(len(categories))], heights, width, label=g)
        ax.set_xticks([ci + width * (len(generators) - 1) / 2 for ci in range(len(categories))], categories,
                      rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 100)
    axes[0].set_ylabel("% of items")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    paths.append(folder / "categories.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths, ""


def write_report(db, run_id: str | None, folder: Path | None, home: Path, ps: Iterable[float] = DEFAULT_PS,
                 plots: bool = True, export: Path | None = None) -> tuple[Report, Path, list[Path], str]:
    """Build the report (from the database, or from a run's `export` folder) and write report.md
    (and the plots) into folder (default: home/reports/RUN)."""
    report = report_from_export(export, run_id, ps) if export is not None else build_report(db, run_id, ps)
    folder = folder or home / "reports" / report.run_id
    folder.mkdir(parents=True, exist_ok=True)
    paths, message = plot(report, folder) if plots else ([], "")
    markdown = folder / "report.md"
    markdown.write_text(to_markdown(report, paths))
    return report, markdown, paths, message


# ---------------------------------------------------------------- CSV export

# Stable column names (documented in the README): add at the end, never rename or reorder.
ATTEMPT_COLUMNS = (
    "run_id", "attempt_id", "created_at", "task", "category", "kind", "generator", "mode", "slot", "device_serial",
    "device_id", "device_emulated", "status", "error", "stopped_by", "llm_calls", "prompt_tokens", "completion_tokens",
    "seconds", "candidates", "correct_candidates", "best_evaluation_id", "verdict", "reason", "compiled", "correct",
    "max_abs_error", "max_rel_error", "native_median_ms", "candidate_median_ms", "speedup", "speedup_low",
    "speedup_high", "timing_reportable", "noise_floor_low", "noise_floor_high", "parity", "effective_speedup", "flags",
    "served_by", "judge_settings", "stage_seconds", "task_sha256", "candidate_sha256",
    # issue 18-19: the scale-aware check, flags that keep a kernel out of the wins, how the timing stopped
    "strict_ok", "scaled_error", "native_scaled_error", "blocked", "draw_seed", "timing_runs", "timing_stopped_by",
    "bound_ms", "bound_fraction",
    # issue 20: the unit test before the judge (scaffolded mode): functions it ran, turned back, and
    # attempts that ended on one of those and went to the judge at the end
    "unit_tests_run", "unit_tests_failed", "unit_tests_judged_at_end",
)
ATTEMPT_TEXT_COLUMNS = ("candidate", "compiler_output")  # with --full
LLM_CALL_COLUMNS = (
    "run_id", "call_id", "attempt_id", "task", "generator", "mode", "device_id", "created_at", "role", "backend",
    "model", "model_sha256", "seed", "temperature", "max_tokens", "prompt_tokens", "completion_tokens", "wall_seconds",
    "tokens_per_second", "prompt_messages", "prompt_chars", "completion_chars",
)
LLM_CALL_TEXT_COLUMNS = ("prompt", "completion")  # with --full


def attempt_rows(data: RunData, full: bool = False) -> list[dict[str, Any]]:
    """One dict per attempt of the run, keyed by ATTEMPT_COLUMNS (+ the text columns when full)."""
    rows = []
    for entry in data.attempts:
        a, e, o = entry["row"], entry["evaluation"] or {}, entry["outcome"]
        summary = store_rows.json_dict(a["summary"])
        best = summary.get("best_verdict") or {}
        row = {
            "run_id": a["run_id"], "attempt_id": a["id"], "created_at": a["created_at"], "task": o.task,
            "category": o.category, "kind": o.kind, "generator": o.generator, "mode": o.mode, "slot": o.slot,
            "device_serial": o.device, "device_id": o.device_id, "device_emulated": int(not o.reportable) if o.device_id else None,
            "status": a["status"], "error": summary.get("error"), "stopped_by": summary.get("stopped_by"),
            "llm_calls": summary.get("llm_calls"), "prompt_tokens": summary.get("prompt_tokens"),
            "completion_tokens": summary.get("completion_tokens"), "seconds": summary.get("seconds"),
            "candidates": o.candidates, "correct_candidates": o.correct_candidates,
            "best_evaluation_id": a["best_evaluation_id"], "verdict": o.verdict, "reason": e.get("reason", best.get("reason")),
            "compiled": int(o.compiled), "correct": int(o.correct), "max_abs_error": e.get("max_abs_error"),
            "max_rel_error": e.get("max_rel_error"), "native_median_ms": e.get("native_median_ms"),
            "candidate_median_ms": e.get("candidate_median_ms"), "speedup": e.get("speedup", best.get("speedup")),
            "speedup_low": e.get("speedup_low", best.get("speedup_low")),
            "speedup_high": e.get("speedup_high", best.get("speedup_high")),
            "timing_reportable": e.get("timing_reportable", int(bool(best.get("timing_reportable"))) if best else None),
            "noise_floor_low": o.floor[0] if o.floor else None, "noise_floor_high": o.floor[1] if o.floor else None,
            "parity": int(o.parity), "effective_speedup": o.effective_speedup, "flags": e.get("flags"),
            "served_by": e.get("served_by", e.get("served")), "judge_settings": e.get("judge_settings"), "stage_seconds": e.get("stage_seconds"),
            "task_sha256": e.get("task_sha256"), "candidate_sha256": e.get("candidate_sha256"),
            "strict_ok": e.get("strict_ok"), "scaled_error": e.get("scaled_error"),
            "native_scaled_error": e.get("native_scaled_error"), "blocked": e.get("blocked"), "draw_seed": e.get("draw_seed"),
            "timing_runs": e.get("timing_runs"), "timing_stopped_by": e.get("timing_stopped_by"),
            "bound_ms": e.get("bound_ms"), "bound_fraction": e.get("bound_fraction"),
            **{f"unit_tests_{k}": v for k, v in ((summary.get("notes") or {}).get("unit_tests") or {}).items()
               if k in ("run", "failed", "judged_at_end")},
        }
        if full:
            row.update(candidate=e.get("candidate"), compiler_output=e.get("compiler_output"))
        rows.append(row)
    return rows


def llm_call_rows(db, data: RunData, full: bool = False) -> list[dict[str, Any]]:
    """One dict per LLM call attached to the run's attempts, keyed by LLM_CALL_COLUMNS."""
    by_attempt = {entry["row"]["id"]: entry["row"] for entry in data.attempts}
    rows = []
    if not by_attempt:
        return rows
    marks = ", ".join("?" for _ in by_attempt)
    for c in db.query(f"SELECT * FROM llm_calls WHERE attempt_id IN ({marks}) ORDER BY id", list(by_attempt)):
        a = by_attempt[c["attempt_id"]]
        prompt = c["prompt"] or "[]"
        try:
            messages = json.loads(prompt)
        except json.JSONDecodeError:
            messages = []
        row = {
            "run_id": data.run_id, "call_id": c["id"], "attempt_id": c["attempt_id"], "task": a["task"],
            "generator": a["generator"], "mode": a["mode"], "device_id": a["device_id"], "created_at": c["created_at"],
            "role": c["role"], "backend": c["backend"], "model": c["model"], "model_sha256": c["model_sha256"],
            "seed": c["seed"], "temperature": c["temperature"], "max_tokens": c["max_tokens"],
            "prompt_tokens": c["prompt_tokens"], "completion_tokens": c["completion_tokens"],
            "wall_seconds": c["wall_seconds"], "tokens_per_second": c["tokens_per_second"],
            "prompt_messages": len(messages), "prompt_chars": sum(len(m.get("content", "")) for m in messages if isinstance(m, dict)),
            "completion_chars": len(c["completion"] or ""),
        }
        if full:
            row.update(prompt=prompt, completion=c["completion"])
        rows.append(row)
    return rows


def export_csv(db, run_id: str | None, folder: Path | None, home: Path, full: bool = False) -> tuple[Path, Path, Path]:
    """Write RUN-attempts.csv, RUN-llm_calls.csv and RUN-run.json (what the run planned: its config,
    devices, status and provenance) into folder (default: MKBENCH_HOME/exports); returns the paths."""
    run_id = run_id or latest_run(db)
    if run_id is None:
        raise LookupError("no run in the database yet: start one with `mkbench run-all`")
    data = load_run(db, run_id)
    folder = folder or home / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    attempts_path, calls_path = folder / f"{run_id}-attempts.csv", folder / f"{run_id}-llm_calls.csv"
    _write_csv(attempts_path, ATTEMPT_COLUMNS + (ATTEMPT_TEXT_COLUMNS if full else ()), attempt_rows(data, full))
    _write_csv(calls_path, LLM_CALL_COLUMNS + (LLM_CALL_TEXT_COLUMNS if full else ()), llm_call_rows(db, data, full))
    run_path = folder / f"{run_id}-run.json"
    run_path.write_text(json.dumps({"run_id": run_id, "created_at": data.created_at, "status": data.status,
                                    "config": data.config, "devices": data.devices, "provenance": data.provenance},
                                   indent=1, default=str) + "\n")  # key order kept: devices in slot order
    return attempts_path, calls_path, run_path


def report_from_export(folder: Path, run_id: str | None = None, ps: Iterable[float] = DEFAULT_PS) -> Report:
    """The report of a run from its export alone (RUN-run.json and RUN-attempts.csv in folder): the
    same items and metrics as from the database (each attempt row carries its verdict, speedup,
    interval, floor and flags as the database gave them)."""
    found = sorted(folder.glob(f"{run_id or '*'}-run.json"))
    if len(found) != 1:
        raise LookupError(f"{folder} holds {len(found)} exported runs ({', '.join(p.name for p in found) or 'no RUN-run.json'}): "
                          f"name one")
    run = json.loads(found[0].read_text())
    attempts_path = folder / f"{run['run_id']}-attempts.csv"
    if not attempts_path.is_file():
        raise LookupError(f"{attempts_path.name} is missing beside {found[0].name}")
    with attempts_path.open(newline="") as handle:
        outcomes = [_exported_outcome(row) for row in csv.DictReader(handle)]
    data = RunData(run["run_id"], run["created_at"], run["status"], run["config"], run.get("provenance") or {},
                   planned_items(run["config"], run["devices"], outcomes), (), run["devices"])
    return report_of(data, ps, [f"rebuilt from the export in {folder}"])


def _exported_outcome(row: dict[str, str]) -> Outcome:
    """An attempt row of the export as the report sees it (the inverse of attempt_rows)."""
    def number(key: str) -> float | None:
        return float(row[key]) if row.get(key) not in (None, "") else None

    def flag(key: str) -> bool:
        return row.get(key) not in (None, "", "0", "False")

    reportable = row.get("device_emulated") in ("0", "")
    floor = (number("noise_floor_low"), number("noise_floor_high")) if number("noise_floor_low") is not None else None
    interval = ((number("speedup_low"), number("speedup_high"))
                if number("speedup_low") is not None and number("timing_runs") is not None else None)
    correct = flag("correct")
    speedup = number("speedup") if flag("timing_reportable") else None
    return Outcome(
        task=row["task"], category=row["category"] or "?", kind=row["kind"] or None, generator=row["generator"],
        mode=row["mode"], slot=row["slot"], device=row["device_serial"], device_id=row["device_id"] or None,
        reportable=reportable, status=row["status"], attempt_id=int(row["attempt_id"]), verdict=row["verdict"] or None,
        compiled=flag("compiled"), correct=correct, speedup=speedup, floor=floor, interval=interval,
        blocked=flag("blocked"), strict=correct and row.get("strict_ok") != "0",
        candidates=int(row["candidates"] or 0), correct_candidates=int(row["correct_candidates"] or 0),
        llm_calls=int(float(row["llm_calls"] or 0)),
        tokens=int(float(row["prompt_tokens"] or 0)) + int(float(row["completion_tokens"] or 0)),
        seconds=float(row["seconds"] or 0.0))


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    partial.replace(path)
