"""How the MNN side stands for `mkbench doctor`: the tree, the NDK and the builds, never raising."""

from __future__ import annotations

from dataclasses import replace

from mkbench import settings as settings_module
from mkbench.checks import Check
from mkbench.mnn import status, tree


def settings_with(tmp_path, mnn_src):
    return replace(settings_module.load({}), home=tmp_path / "home", builds_dir=tmp_path / "builds", mnn_src=mnn_src)


def test_doctor_checks_never_raise(tmp_path):
    checks = status.doctor_checks(settings_with(tmp_path, tmp_path / "nowhere"))
    assert checks and all(isinstance(c, Check) for c in checks)
    assert checks[0].name == "MNN tree" and not checks[0].ok


def test_the_installed_tree_matches_the_pin(mnn_settings):
    found = tree.open_tree(mnn_settings, require_pin=False)
    assert found.matches_pin, f"{found.path} fingerprint {found.fingerprint}"
    checks = status.doctor_checks(mnn_settings)
    assert checks[0].ok
