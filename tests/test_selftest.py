"""The noise floor: native MNN timed against itself on the host, for a real task."""

from __future__ import annotations

import pytest

from mkbench.devices import get_device
from mkbench.judge import selftest
from mkbench.tasks import get_task


@pytest.mark.slow
def test_native_against_itself_gives_a_band(mnn_settings):
    floor = selftest.measure(get_task("Softmax"), get_device("host", mnn_settings), mnn_settings, pairs=4)
    assert floor.reportable and floor.pairs == 4 and floor.median_ms > 0
    assert floor.low <= floor.high and floor.speedup > 0  # how narrow is for benchmarks/noise.py, not a test


@pytest.mark.slow
def test_an_emulated_device_gives_no_reportable_floor(mnn_settings):
    floor = selftest.measure(get_task("Abs"), get_device("qemu-arm64", mnn_settings), mnn_settings, pairs=2)
    assert not floor.reportable
