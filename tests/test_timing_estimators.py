"""The estimator benchmark's arithmetic (appliance/benchmarks/timing_estimators.py): its figures are
quoted in the README, so its interval and its slow-state count are checked on known data."""

from __future__ import annotations

import importlib.util
import json

from mkbench import settings

spec = importlib.util.spec_from_file_location(
    "timing_estimators", settings.SHIPPED / "appliance" / "benchmarks" / "timing_estimators.py")
estimators = importlib.util.module_from_spec(spec)
spec.loader.exec_module(estimators)


def test_the_median_interval_is_the_order_statistics_the_binomial_allows():
    # n = 5: even [min, max] holds the median only 1 - 2/32 = 93.75% of the time: no interval.
    assert estimators.median_interval([1.0, 2.0, 3.0, 4.0, 5.0])[1:] == (0.0, float("inf"))
    # n = 6: [min, max] (1 - 2/64 = 96.9%).
    assert estimators.median_interval([6.0, 1.0, 5.0, 2.0, 4.0, 3.0]) == (3.5, 1.0, 6.0)
    # n = 12: the 3rd and 10th (2 * P(B <= 2) = 3.9%; the 4th and 9th would leave 14.6% out).
    centre, low, high = estimators.median_interval([float(x) for x in range(12, 0, -1)])
    assert (centre, low, high) == (6.5, 3.0, 10.0)


def test_analyse_counts_runs_that_ran_wholly_slow(tmp_path, capsys):
    def run(label, quiet):  # 20 iterations: two at the quiet speed, the rest 10% slower
        times = [quiet] * 2 + [quiet * 1.1] * 18
        return {"label": label, "guard_ms": quiet * 1.1, "iterations": 20, "quantiles_ms": estimators.quantiles(times)}

    runs = []
    for i in range(6):
        runs.append(run("native", 1.0 if i != 2 else 1.4))  # one native run in a slow state
        runs.append(run("twin", 1.0))
    runs.append(run("native", 1.0))
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"device": "host", "pairs": 6, "tasks": {"Toy": runs}}))
    estimators.analyse(path)
    out = capsys.readouterr().out
    assert "1/13 (8%)" in out and "Toy 1.40x" in out
    # The slow native run spoils two sandwiched ratios: the t interval widens, the median does not move.
    today = [line for line in out.splitlines() if line.startswith("guard median") and "geometric" in line][0]
    median = [line for line in out.splitlines() if line.startswith("guard median") and "order-statistic" in line][0]
    assert today.split()[-3] == "0%" and median.split()[-3] == "100%"
