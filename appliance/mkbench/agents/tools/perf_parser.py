"""The Performance Parser: a correct kernel's timing as a few indicators for the Accelerator.

    profile = parse(verdict, db, device)   # candidate vs native time, spread, threads, backend
    render(profile)
"""

from __future__ import annotations

import json
import statistics

from ... import settings as settings_module
from ...judge.verdict import Verdict


def _spread(times: list[float]) -> dict:
    if not times:
        return {}
    return {"median_ms": round(statistics.median(times), 4), "min_ms": round(min(times), 4), "max_ms": round(max(times), 4),
            "iterations": len(times)}


def parse(verdict: Verdict, db=None, device=None) -> dict:
    """Indicators of one judged kernel: which code served the op, times, speedup and its range, threads."""
    served = [f"{r.get('op_type')}{':' + r['sub_type'] if r.get('sub_type') else ''} by {r.get('served')} "
              f"({r.get('execution_class', '?')})" for r in verdict.served if isinstance(r, dict)]
    profile = {
        "verdict": verdict.verdict,
        "served": served,
        "native_median_ms": verdict.native_median_ms,
        "candidate_median_ms": verdict.candidate_median_ms,
        "speedup": verdict.speedup,
        "speedup_range": [verdict.speedup_low, verdict.speedup_high] if verdict.speedup_low is not None else None,
        "timing_reportable": verdict.timing_reportable,
        "threads": settings_module.JUDGE_THREADS,
        "precision": settings_module.JUDGE_PRECISION,
        "flags": list(verdict.flags),
    }
    if device is not None:
        profile["device"] = {"serial": device.serial, "abi": device.abi, "emulated": device.emulated}
    if db is not None and verdict.evaluation_id is not None:
        row = db.conn.execute("SELECT judge_settings FROM evaluations WHERE id = ?", [verdict.evaluation_id]).fetchone()
        if row and row[0]:
            config = json.loads(row[0])
            profile["threads"], profile["precision"] = config.get("threads"), config.get("precision")
        for side in ("native", "candidate"):
            times = []
            for (values,) in db.conn.execute("SELECT times_ms FROM measurements WHERE evaluation_id = ? AND side = ?",
                                             [verdict.evaluation_id, side]):
                times += json.loads(values)
            if times:
                profile[f"{side}_spread"] = _spread(times)
    if verdict.speedup is None and verdict.native_median_ms and verdict.candidate_median_ms:
        # Emulated devices time too, but not comparably with a phone: a ratio for guidance only.
        profile["ratio_unreportable"] = round(verdict.native_median_ms / verdict.candidate_median_ms, 3)
    return profile


def _ms(value) -> str:
    return f"{value:.4g} ms" if isinstance(value, (int, float)) else "?"


def render(profile: dict) -> str:
    """A few short lines for the Accelerator's prompt."""
    lines = [f"served: {'; '.join(profile['served'])}"] if profile.get("served") else []
    for side in ("candidate", "native"):
        spread = profile.get(f"{side}_spread") or {}
        extra = (f" (min {_ms(spread['min_ms'])}, max {_ms(spread['max_ms'])} over {spread['iterations']} iterations)"
                 if spread else "")
        lines.append(f"{side} median: {_ms(profile.get(f'{side}_median_ms'))}{extra}")
    if profile.get("speedup") is not None:
        low_high = profile.get("speedup_range")
        lines.append(f"speedup: {profile['speedup']:.3g}x" + (f" (per pair {low_high[0]:.3g}-{low_high[1]:.3g})" if low_high else ""))
    elif profile.get("ratio_unreportable") is not None:
        lines.append(f"native/candidate time ratio on an emulated device (not a speedup): {profile['ratio_unreportable']}")
    device = profile.get("device") or {}
    lines.append(f"threads: {profile.get('threads')}, precision: {profile.get('precision')}"
                 + (f", device: {device.get('serial')} ({device.get('abi')}{', emulated' if device.get('emulated') else ''})" if device else ""))
    if profile.get("flags"):
        lines.append(f"flags: {'; '.join(profile['flags'])}")
    return "\n".join(lines)
