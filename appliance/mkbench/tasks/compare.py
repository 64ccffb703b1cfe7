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


def compare(name: str, reference: np.ndarray, actual: np.ndarray, tolerance: Tolerance) -> Comparison:
    """Compare one output; the reason names the output, the figure and where it fails."""
    if tuple(actual.shape) != tuple(reference.shape):
        if actual.size == reference.size and actual.size > 0:
            actual = actual.reshape(reference.shape)  # MNN may squeeze/keep unit dims differently
        else:
            return Comparison(False, f"{name}: shape {list(actual.shape)} != expected {list(reference.shape)}", None, None)
    if reference.size == 0:
        return Comparison(True, "", 0.0, 0.0)
    exact = reference.dtype.kind in "biu" or (tolerance.atol == 0 and tolerance.rtol == 0)
    ref = reference.astype(np.float64)
    out = actual.astype(np.float64)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        return Comparison(False, f"{name}: {int((~finite).sum())} non-finite values (first at {tuple(int(i) for i in bad)})",
                          float("inf"), float("inf"), tuple(int(i) for i in bad))
    error = np.abs(out - ref)
    max_abs = float(error.max())
    max_rel = float((error / np.maximum(np.abs(ref), 1e-30)).max())
    if exact:
        allowed = np.zeros_like(ref)
    else:
        atol = tolerance.atol * max(1.0, float(np.abs(ref).max())) if tolerance.scale_atol_by_output else tolerance.atol
        allowed = atol + tolerance.rtol * np.abs(ref)
    excess = error - allowed
    if (excess <= 0).all():
        return Comparison(True, "", max_abs, max_rel)
    worst = tuple(int(i) for i in np.unravel_index(int(excess.argmax()), excess.shape))
    count = int((excess > 0).sum())
    return Comparison(False, f"{name}: {count} of {ref.size} values off, max abs error {max_abs:.3g} "
                             f"(at {list(worst)}: got {out[worst]:.6g}, expected {ref[worst]:.6g})",
                      max_abs, max_rel, worst)


def compare_all(references: dict[str, np.ndarray], actuals: dict[str, np.ndarray], tolerance: Tolerance) -> Comparison:
    """Compare every output; the first failure decides, errors are the max over outputs."""
    max_abs, max_rel = 0.0, 0.0
    for name, reference in references.items():
        if name not in actuals:
            return Comparison(False, f"{name}: output missing", None, None)
        result = compare(name, reference, actuals[name], tolerance)
        if not result.ok:
            return result
        max_abs, max_rel = max(max_abs, result.max_abs_error or 0.0), max(max_rel, result.max_rel_error or 0.0)
    return Comparison(True, "", max_abs, max_rel)
