"""Locks between mkbench processes: a second holder is refused (with the first one's pid), a
build is made once even when two processes want it, and a killed holder leaves no lock behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mkbench.filelock import Busy, built_once, held_or_busy


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    lock = tmp_path / "locks" / "run-x.lock"
    with held_or_busy(lock, "run x is running"):
        holder = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            from pathlib import Path
            from mkbench.filelock import Busy, held_or_busy
            try:
                with held_or_busy(Path({str(lock)!r}), "run x is running"):
                    print("taken")
            except Busy as busy:
                print(busy)
        """)], capture_output=True, text=True, timeout=60)
        assert holder.stdout.strip() == f"run x is running (pid {os.getpid()})"
    with held_or_busy(lock, "run x is running"):  # released: free again
        pass


def test_a_killed_holder_leaves_no_lock(tmp_path):
    lock = tmp_path / "device.lock"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from mkbench.filelock import held_or_busy
        with held_or_busy(Path({str(lock)!r}), "busy"):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    with pytest.raises(Busy):
        with held_or_busy(lock, "busy"):
            pass
    child.kill()
    child.wait()
    with held_or_busy(lock, "busy"):
        pass


def test_built_once_builds_only_what_is_not_there(tmp_path):
    made = []
    product = tmp_path / "product"

    def ready():
        return product.read_text() if product.exists() else None

    def build():
        made.append(1)
        product.write_text("built")
        return "built"

    assert built_once(tmp_path / "p.lock", ready, build) == "built"
    assert built_once(tmp_path / "p.lock", ready, build) == "built"
    assert made == [1]
