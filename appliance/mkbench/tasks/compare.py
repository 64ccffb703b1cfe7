"""Does a kernel's output match the reference? The one place that decides it.

NaN and Inf never match anything (not even NaN). Integer and boolean outputs must be
exact. Floats must satisfy |out - ref| <= atol' + rtol * |ref| everywhere, where atol' is
scaled by the output's magnitude for accumulating ops (see spec.Tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tasks.spec import Tolerance


@dataclass(frozen=True)
class Comparison:
    ok: bool
    reason: str  # one line; empty when ok
    max_abs_error: float | None
    max_rel_error: float | None
    worst_index: tuple[int, ...] | None = None  # where the largest excess over tolerance is
    scaled_error: float = float("inf")  # max |out - ref| / max |ref| (see scaled_error below)


CHUNK = 1 << 18  # values compared at a time: float64 temporaries stay in cache, a 32 MB output is one pass


def compare(name: str, reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Comparison:
    """Compare one output; the reason names the output, the figure and where it fails."""
    if tuple(actual.shape) != tuple(reference.shape):
        if actual.size == reference.size and actual.size > 0:
            actual = actual.reshape(reference.shape)  # MNN may squeeze/keep unit dims differently
        else:
            return Comparison(False, f"{name}: shape {list(actual.shape)} != expected {list(reference.shape)}", None, None)
    if reference.size == 0:
        return Comparison(True, "", 0.0, 0.0, scaled_error=0.0)
    flat_ref, flat_out = reference.reshape(-1), actual.reshape(-1)
    magnitude = float(max(abs(float(flat_ref.max())), abs(float(flat_ref.min()))))
    atol, rtol = _bounds(reference, tolerance, magnitude)
    max_abs = max_rel = 0.0
    off, worst_excess, worst_at = 0, 0.0, -1
    for start in range(0, flat_ref.size, CHUNK):
        ref = flat_ref[start:start + CHUNK].astype(np.float64)
        out = flat_out[start:start + CHUNK].astype(np.float64)
        finite = np.isfinite(out)
        if not finite.all():
            first = start + int(np.argmin(finite))
            bad = tuple(int(i) for i in np.unravel_index(first, reference.shape))
            count = int(np.count_nonzero(~np.isfinite(flat_out.astype(np.float64))))
            return Comparison(False, f"{name}: {count} non-finite values (first at {bad})", float("inf"), float("inf"), bad)
        error = np.abs(out - ref)
        absref = np.abs(ref)
        max_abs = max(max_abs, float(error.max()))
        max_rel = max(max_rel, float((error / np.maximum(absref, 1e-30)).max()))
        excess = error - (atol + rtol * absref)
        over = int(np.count_nonzero(excess > 0))
        if over:
            off += over
            at = int(excess.argmax())
            if excess[at] > worst_excess:
                worst_excess, worst_at = float(excess[at]), start + at
    scaled = float("inf") if reference.dtype.kind in "biu" and max_abs else max_abs / max(magnitude, 1e-30)
    if not off:
        return Comparison(True, "", max_abs, max_rel, scaled_error=scaled)
    worst = tuple(int(i) for i in np.unravel_index(worst_at, reference.shape))
    return Comparison(False, f"{name}: {off} of {reference.size} values off, max abs error {max_abs:.3g} "
                             f"(at {list(worst)}: got {float(flat_out[worst_at]):.6g}, expected {float(flat_ref[worst_at]):.6g})",
                      max_abs, max_rel, worst, scaled_error=scaled)


def _bounds(reference: np.ndarray, tolerance: Tolerance, magnitude: float) -> tuple[float, float]:
    """(atol', rtol) for one output: exact for integers and booleans, atol scaled by the output's
    magnitude for accumulating ops."""
    if reference.dtype.kind in "biu" or (tolerance.atol == 0 and tolerance.rtol == 0):
        return 0.0, 0.0
    atol = tolerance.atol * max(1.0, magnitude) if tolerance.scale_atol_by_output else tolerance.atol
    return atol, tolerance.rtol


def failing(reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """The flat indices where `actual` fails the rule compare() applies (non-finite, or beyond
    atol' + rtol * |ref|), in order: for showing a small output's first differences."""
    flat_ref, flat_out = reference.reshape(-1), actual.reshape(-1).astype(np.float64)
    if flat_ref.size == 0:
        return np.zeros(0, dtype=np.int64)
    atol, rtol = _bounds(reference, tolerance, float(np.abs(flat_ref.astype(np.float64)).max()))
    ref = flat_ref.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flat_out) | (np.abs(flat_out - ref) > atol + rtol * np.abs(ref))
    return np.flatnonzero(bad)


def compare_all(references: dict[str, np.ndarray], actuals: dict[str, np.ndarray], tolerance: Tolerance) -> Comparison:
    """Compare every output; the first failure decides, errors (and the scaled error) are the max
    over outputs."""
    max_abs, max_rel, scaled = 0.0, 0.0, 0.0
    for name, reference in references.items():
        if name not in actuals:
            return Comparison(False, f"{name}: output missing", None, None)
        result = compare(name, reference, actuals[name], tolerance)
        if not result.ok:
            return result
        max_abs, max_rel = max(max_abs, result.max_abs_error or 0.0), max(max_rel, result.max_rel_error or 0.0)
        scaled = max(scaled, result.scaled_error)
    return Comparison(True, "", max_abs, max_rel, scaled_error=scaled)


# The scale-aware check, beside the paper's rule: an output's error relative to its own magnitude
# (max |out - ref| / max |ref|), held against native MNN's on the same draw. The paper's absolute
# 1e-4 cannot see a wrong output whose values are all small: a Softmax over 2,048 values (outputs
# near 5e-4) whose denominator is off by one (every value 0.08% off) passes it.
STRICT_FACTOR = 10.0  # a kernel may err this many times more than native MNN does ...
STRICT_FLOOR = 1e-5  # ... or this much of the output's magnitude (fp32 rounding, another summation order)


def scaled_error(references: dict[str, np.ndarray], actuals: dict[str, np.ndarray]) -> float:
    """The largest error relative to its output's magnitude, over the outputs (inf for a missing or
    non-finite output, or an integer output that differs), whether or not the outputs pass."""
    worst = 0.0
    for name, reference in references.items():
        actual = actuals.get(name)
        if actual is None or actual.size != reference.size:
            return float("inf")
        result = compare(name, reference, actual.reshape(reference.shape), Tolerance(atol=0.0, rtol=0.0))
        if result.max_abs_error is None or result.max_abs_error == float("inf"):
            return float("inf")
        worst = max(worst, result.scaled_error)
    return worst


def strict_ok(candidate_error: float, native_error: float) -> bool:
    """Within STRICT_FACTOR times native MNN's scaled error on the same draws, or STRICT_FLOOR."""
    return candidate_error <= max(STRICT_FACTOR * native_error, STRICT_FLOOR)
